"""Evidence bundles: a signed ZIP that shows an auditor what a membership-inference audit found and proves that
nobody edited the record afterwards (every file hashed in MANIFEST.json, the manifest signed with Ed25519, the
audit-log segment of the period hash-chained), and the check of one.

Nothing in a bundle is a member record value: runs carry metrics, hashes and record ids only.

Import from the submodules: format and verify are pure (an auditor runs `verify` without Django), so this
package imports nothing.
  format   the bundle's files, CSV and JSON encodings, the ZIP          (pure)
  verify   verify_bundle: signature, hashes, the audit-log chain,      (pure)
           the controls annex
  checks   the evidence checks: facts in, status and sentence out      (pure)
  annex    the framework mapping files (controls/*.json) applied       (pure)
  keys     the signing key from settings
  gather   what goes in, read from the database
  report   the report's view-model and its HTML and PDF
  figures  the report's SVG figures
  build    build_run_bundle, build_period_bundle
"""
