"""The check of an evidence bundle someone handed over: the manifest's Ed25519 signature and the key id it names,
every file's hash and size, missing and extra files, the audit-log segment's hash chain (through the links that stand for entries about
other models), the trail's signed head when the bundle carries one, and the controls annex (well-formed, statuses
from the vocabulary and following the rule, each row's framework mapping file in the bundle with its hash).

Pure (stdlib, cryptography and monitor.trail.chain): an auditor runs it without Django installed. The bundle may
be hostile, so every member is read in bounded steps and never inflated whole.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audits.evidence.format import (
    CHECK_FIELDS,
    CONTROL_ROW_FIELDS,
    CONTROLS_CSV,
    CONTROLS_DIR,
    CONTROLS_FORMAT,
    CONTROLS_JSON,
    FORMAT_1,
    LINK_KEYS,
    MANIFEST,
    MAX_CHAIN_FAILURES,
    MAX_MANIFEST_BYTES,
    PAYLOAD_KEYS,
    PUBLIC_KEY,
    REQUIRED_BY_FORMAT,
    REQUIRED_FILES,
    SAFE_COMPRESSION,
    SIGNATURE,
    TRAIL_HEAD,
    ControlStatus,
    key_fingerprint,
    key_id,
)
from monitor.trail.chain import canonical_json, entry_hash, head_statement

# What a damaged, encrypted or oddly compressed member raises on reading.
READ_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, RuntimeError, NotImplementedError)


@dataclass(frozen=True)
class Check:
    item: str
    ok: bool
    message: str

    def line(self) -> str:
        return f"{'OK' if self.ok else 'FAIL':<4}  {self.item}: {self.message}"


@dataclass
class VerifyReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [check for check in self.checks if not check.ok]

    def lines(self) -> list[str]:
        return [check.line() for check in self.checks]

    def add(self, item: str, ok: bool, message: str) -> bool:
        self.checks.append(Check(item, ok, message))
        return ok


def verify_bundle(data: bytes, *, public_key_pem: bytes | None = None) -> VerifyReport:
    """Check a bundle: the manifest's signature, every file's hash and size, missing and extra files,
    the audit-log chain segment, the trail's signed head (when there is one), and (when given) that the embedded
    public key is the trusted one.

    Without `public_key_pem` the embedded key is used, which proves integrity but not origin.
    """
    report = VerifyReport()
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = [info.filename for info in archive.infolist()]
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as exc:
        report.add("bundle", False, f"not a readable ZIP file ({exc})")
        return report
    duplicates = sorted({name for name in names if names.count(name) > 1})
    report.add("bundle", not duplicates, f"{len(names)} files" if not duplicates else
               f"{', '.join(duplicates)} appear(s) more than once in the ZIP")
    infos = {info.filename: info for info in archive.infolist()}

    if MANIFEST not in infos:
        report.add(MANIFEST, False, "missing from the bundle")
        return report
    manifest_bytes = _read(archive, infos, MANIFEST, limit=MAX_MANIFEST_BYTES)
    if manifest_bytes is None:
        report.add(MANIFEST, False, f"unreadable or larger than {MAX_MANIFEST_BYTES} bytes")
        return report
    try:
        manifest = json.loads(manifest_bytes)
        listed = manifest["files"]
        if not isinstance(listed, dict):
            raise TypeError("files is not an object")
    except (ValueError, KeyError, TypeError) as exc:
        report.add(MANIFEST, False, f"not a valid manifest ({exc})")
        return report

    embedded = _public_key(_read(archive, infos, PUBLIC_KEY, limit=64 * 2**10))
    if embedded is None:
        report.add(PUBLIC_KEY, False, "missing or not an Ed25519 public key in PEM")
    trusted = embedded
    if public_key_pem is not None:
        given = _public_key(public_key_pem)
        if given is None:
            report.add("public key", False, "the given public key is not an Ed25519 public key in PEM")
            return report
        trusted = given
        if embedded is not None:
            same = key_fingerprint(embedded) == key_fingerprint(given)
            report.add(PUBLIC_KEY, same, "is the given public key" if same else
                       f"is not the given public key (bundle key {key_fingerprint(embedded)[:16]}…, "
                       f"given {key_fingerprint(given)[:16]}…)")
    _check_signature(report, _read(archive, infos, SIGNATURE, limit=2**10), manifest_bytes, trusted,
                     given=public_key_pem is not None)
    _check_key_id(report, manifest, trusted, given=public_key_pem is not None)

    for name in sorted(listed):
        _check_file(report, archive, infos, name, listed[name])
    for name in REQUIRED_BY_FORMAT.get(manifest.get("format"), REQUIRED_FILES):
        if name not in listed:
            report.add(name, False, "required file not listed in MANIFEST.json")
    extra = sorted(set(infos) - set(listed) - {MANIFEST, SIGNATURE})
    for name in extra:
        report.add(name, False, "extra file, not listed in MANIFEST.json")
    if not extra:
        report.add("extra files", True, "none: every file in the ZIP is listed in MANIFEST.json")

    log_entry = listed.get("audit_log.jsonl")
    log_bytes = _read(archive, infos, "audit_log.jsonl", limit=log_entry.get("size") if isinstance(log_entry, dict) else 0)
    lines = _check_chain(report, log_bytes, manifest) if log_bytes is not None else []
    if TRAIL_HEAD in listed:
        head_bytes = _read(archive, infos, TRAIL_HEAD, limit=64 * 2**10)
        try:
            head = json.loads(head_bytes) if head_bytes is not None else None
        except ValueError:
            head = None
        ok, message = check_signed_head(head, key=trusted, lines=lines)
        report.add(f"{TRAIL_HEAD} signed head", ok, message)
    _check_annex(report, archive, infos, listed, manifest)
    return report


def _read(archive: zipfile.ZipFile, infos: dict, name: str, *, limit: Any = None) -> bytes | None:
    info = infos.get(name)
    if info is None:
        return None
    # The declared size is checked before reading, and reading stops at it: ZipFile.read would inflate the
    # whole member in one call, however small its declared size, before cutting it to that size.
    if isinstance(limit, int) and info.file_size > limit or info.compress_type not in SAFE_COMPRESSION:
        return None
    try:
        with archive.open(info) as member:
            return member.read(info.file_size)
    except READ_ERRORS:
        return None  # damaged, encrypted or in an unsupported compression: the caller names the file


def _digest(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[str, int] | None:
    """SHA-256 and size of a member, inflated 1 MiB at a time and never held whole (a bundle may be hostile)."""
    if info.compress_type not in SAFE_COMPRESSION:
        return None  # bzip2 and LZMA inflate a whole read at once, with no bound; we never write them
    digest, size = hashlib.sha256(), 0
    try:
        with archive.open(info) as member:
            while chunk := member.read(2**20):
                digest.update(chunk)
                size += len(chunk)
    except READ_ERRORS:
        return None
    return digest.hexdigest(), size


def _public_key(pem: bytes | None) -> Ed25519PublicKey | None:
    if not pem:
        return None
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError):
        return None
    return key if isinstance(key, Ed25519PublicKey) else None


def _check_signature(report: VerifyReport, signature: bytes | None, manifest_bytes: bytes,
                     key: Ed25519PublicKey | None, *, given: bool) -> None:
    whose = "the given public key" if given else "the bundle's own public key (origin not proven: pass a trusted key)"
    if signature is None:
        report.add(SIGNATURE, False, "missing from the bundle")
    elif key is None:
        report.add(SIGNATURE, False, "cannot be checked: no usable public key")
    else:
        try:
            key.verify(signature, manifest_bytes)
            report.add(SIGNATURE, True, f"valid Ed25519 signature of {MANIFEST} by {whose}")
        except InvalidSignature:
            report.add(SIGNATURE, False, f"not a valid signature of {MANIFEST} by {whose}: {MANIFEST} was changed "
                                         "or signed with another key")


def _check_key_id(report: VerifyReport, manifest: dict, key: Ed25519PublicKey | None, *, given: bool) -> None:
    """The key id MANIFEST.json names (signature.key_id) against the key the signature is checked with: after a key
    change, whoever checks a bundle with the wrong published key is told which key it needs."""
    signature = manifest.get("signature")
    named = signature.get("key_id") if isinstance(signature, dict) else None
    whose = "the given public key" if given else "the bundle's own public key"
    if named is None:
        report.add("key id", True, "none in MANIFEST.json (a bundle from before key ids); the signature decides")
    elif key is None:
        report.add("key id", False, f"the bundle names key {named}, but there is no usable public key to compare")
    elif named != key_id(key):
        report.add("key id", False, f"the bundle was signed with key {named}; {whose} is {key_id(key)}")
    else:
        report.add("key id", True, f"{named} is the id of {whose}")


def _check_file(report: VerifyReport, archive: zipfile.ZipFile, infos: dict, name: str, expected: Any) -> None:
    if not isinstance(expected, dict) or "sha256" not in expected or "size" not in expected:
        report.add(name, False, "its MANIFEST.json entry has no sha256 and size")
        return
    info = infos.get(name)
    if info is None:
        report.add(name, False, "missing from the bundle (listed in MANIFEST.json)")
        return
    if info.file_size != expected["size"]:
        report.add(name, False, f"size {info.file_size} bytes, MANIFEST.json says {expected['size']}")
        return
    read = _digest(archive, info)
    if read is None:
        report.add(name, False, "cannot be read from the ZIP (damaged)")
        return
    digest, size = read
    if digest != expected["sha256"]:
        report.add(name, False, f"SHA-256 {digest[:16]}… does not match MANIFEST.json ({str(expected['sha256'])[:16]}…): "
                                "the file was changed")
        return
    report.add(name, True, f"SHA-256 and size ({size} bytes) match")


def _check_chain(report: VerifyReport, log_bytes: bytes, manifest: dict) -> list[dict]:
    """Adds the segment's checks; returns its lines (none if one is not a JSON object)."""
    item = "audit_log.jsonl chain"
    segment: dict = manifest["audit_log"] if isinstance(manifest.get("audit_log"), dict) else {}
    lines: list[dict] = []
    for number, raw in enumerate(log_bytes.decode("utf-8", errors="replace").splitlines(), start=1):
        try:
            line = json.loads(raw)
            if not isinstance(line, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            report.add(item, False, f"line {number} is not a JSON object ({exc})")
            return []
        line["_line"] = number
        lines.append(line)
    if not lines:
        report.add(item, False, "no entries")
        return []
    ok, message = check_segment(lines, anchor=segment.get("anchor_prev_hash"))
    problems = [] if ok else message.split("\n")
    first, last = lines[0], lines[-1]
    if segment.get("first_seq") != first.get("seq") or segment.get("last_seq") != last.get("seq"):
        problems.append(f"entries #{first.get('seq')}–#{last.get('seq')}, MANIFEST.json says "
                        f"#{segment.get('first_seq')}–#{segment.get('last_seq')}")
    if segment.get("count") is not None and segment.get("count") != len(lines):
        problems.append(f"{len(lines)} entries, MANIFEST.json says {segment.get('count')}")
    export_after = last["after"] if isinstance(last.get("after"), dict) else {}
    if last.get("action") != "evidence.exported" or export_after.get("export_id") != manifest.get("export_id"):
        problems.append(f"the last entry (#{last.get('seq')}, line {last['_line']}) is not this export's "
                        f"evidence.exported entry")
    if segment.get("head_hash") is not None and segment.get("head_hash") != last.get("hash"):
        problems.append(f"the last entry's hash is not the head hash in MANIFEST.json (entry #{last.get('seq')})")
    for problem in problems[:MAX_CHAIN_FAILURES]:
        report.add(item, False, problem)
    if len(problems) > MAX_CHAIN_FAILURES:
        report.add(item, False, f"… and {len(problems) - MAX_CHAIN_FAILURES} more")
    if not problems:
        report.add(item, True, f"{message}; ends with this export (#{last['seq']})")
    return lines


def _check_annex(report: VerifyReport, archive: zipfile.ZipFile, infos: dict, listed: dict, manifest: dict) -> None:
    """controls.json against the vocabulary and the mapping files the bundle carries (their bytes are held to the
    manifest by the file checks), and controls.csv against controls.json."""
    item = f"{CONTROLS_JSON} annex"
    if CONTROLS_JSON not in listed:
        if manifest.get("format") == FORMAT_1:
            report.add("controls annex", True, f"none: a bundle of format {FORMAT_1}, made before the annex")
        return  # otherwise the missing required file is named already

    def read(name: str) -> bytes | None:
        entry = listed.get(name)
        return _read(archive, infos, name, limit=entry.get("size") if isinstance(entry, dict) else 0)

    data = read(CONTROLS_JSON)
    if data is None:
        report.add(item, False, "cannot be read")
        return
    try:
        annex = json.loads(data)
    except ValueError as exc:
        report.add(item, False, f"not JSON ({exc})")
        return
    problems = annex_problems(annex, listed=listed, read=read)
    csv_data = read(CONTROLS_CSV)
    if not problems and csv_data is not None:
        problems += _csv_problems(csv_data, annex["rows"])
    for problem in problems[:MAX_CHAIN_FAILURES]:
        report.add(item, False, problem)
    if len(problems) > MAX_CHAIN_FAILURES:
        report.add(item, False, f"… and {len(problems) - MAX_CHAIN_FAILURES} more")
    if not problems:
        report.add(item, True, f"{len(annex['rows'])} controls of {len(annex['frameworks'])} frameworks, statuses from "
                               "the vocabulary and following the rule, each framework's mapping file in the bundle "
                               f"with its hash{'; matches ' + CONTROLS_CSV if csv_data is not None else ''}")


def annex_problems(annex: Any, *, listed: dict, read: Any) -> list[str]:
    """What is wrong with controls.json, one line per problem ([] when nothing is). `read(name)` gives a bundle
    file's bytes."""
    if not isinstance(annex, dict) or annex.get("format") != CONTROLS_FORMAT:
        return [f"not a controls annex of format {CONTROLS_FORMAT}"]
    if not isinstance(annex.get("frameworks"), list) or not isinstance(annex.get("rows"), list) or not annex["rows"]:
        return ["needs a list of frameworks and a non-empty list of rows"]
    problems: list[str] = []
    controls: dict[str, dict] = {}  # framework file -> {control id: its mapping}
    ids: dict[str, str] = {}  # framework file -> framework id
    broken: set[str] = set()  # named once here, not again for each of its rows
    for framework in annex["frameworks"]:
        name = framework.get("file") if isinstance(framework, dict) else None
        if not isinstance(name, str) or not name.startswith(CONTROLS_DIR):
            problems.append(f"a framework without a file under {CONTROLS_DIR}: {str(framework)[:80]}")
            continue
        broken.add(name)
        entry = listed.get(name)
        if not isinstance(entry, dict):
            problems.append(f"framework {framework.get('id')}: its mapping file {name} is not in the bundle")
            continue
        if framework.get("sha256") != entry.get("sha256"):
            problems.append(f"framework {framework.get('id')}: SHA-256 {str(framework.get('sha256'))[:16]}… is not "
                            f"that of {name} in the bundle ({str(entry.get('sha256'))[:16]}…)")
            continue
        try:
            spec = json.loads(read(name) or b"")
            controls[name] = {c["id"]: c for c in spec["controls"]}
            ids[name] = framework.get("id")
            broken.discard(name)
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(f"framework {framework.get('id')}: {name} is not a mapping file ({exc})")
    allowed = {str(status) for status in ControlStatus}
    for index, row in enumerate(annex["rows"]):
        where = f"row {index}"
        if not isinstance(row, dict) or any(key not in row for key in CONTROL_ROW_FIELDS):
            problems.append(f"{where}: needs {', '.join(CONTROL_ROW_FIELDS)}")
            continue
        where = f"row {index} ({row['control']})"
        checks = row["checks"]
        if not isinstance(checks, list) or not checks or any(
                not isinstance(c, dict) or any(key not in c for key in CHECK_FIELDS) for c in checks):
            problems.append(f"{where}: its checks need {', '.join(CHECK_FIELDS)}")
            continue
        statuses = [row["status"], *(c["status"] for c in checks)]
        if not set(statuses) <= allowed:
            problems.append(f"{where}: status {sorted(set(statuses) - allowed)} is not one of {sorted(allowed)}")
            continue
        worst = max((ControlStatus(c["status"]) for c in checks), key=lambda status: status.rank)
        if row["status"] != worst:
            problems.append(f"{where}: status {row['status']!r}, but its checks make it {str(worst)!r}")
        mapping = controls.get(row["framework_file"], {}).get(row["control"])
        if row["framework_file"] in broken:
            continue
        if row["framework_file"] not in controls:
            problems.append(f"{where}: its framework file {row['framework_file']} is not one of the annex's frameworks")
        elif ids[row["framework_file"]] != row["framework"] or mapping is None:
            problems.append(f"{where}: not a control of {row['framework_file']}")
        elif mapping.get("clause") != row["clause"] or mapping.get("checks") != [c["name"] for c in checks]:
            problems.append(f"{where}: its clause or checks differ from {row['framework_file']}")
    return problems


def _csv_problems(data: bytes, rows: list[dict]) -> list[str]:
    try:
        table = [(r.get("control"), r.get("status")) for r in csv.DictReader(io.StringIO(data.decode("utf-8")))]
    except (UnicodeDecodeError, csv.Error) as exc:
        return [f"{CONTROLS_CSV} is not CSV ({exc})"]
    if table != [(row["control"], row["status"]) for row in rows]:
        return [f"{CONTROLS_CSV} does not list the same controls and statuses as {CONTROLS_JSON}"]
    return []


def check_signed_head(head: Any, *, key: Ed25519PublicKey | None, lines: list[dict]) -> tuple[bool, str]:
    """The trail's signed head (trail_head.json): signed by the bundle's key over monitor.trail.chain's
    head_statement, its key id (when it has one) that key's, and, when the segment holds its entry, that entry has
    its hash. A database owner can rebuild
    the keyless chain, its head and the segment with it; not this signature."""
    fields = ("seq", "hash", "signed_at", "signature", "key_sha256")
    if not isinstance(head, dict) or any(not isinstance(head.get(f), str) for f in fields[1:]) \
            or not isinstance(head.get("seq"), int) or isinstance(head.get("seq"), bool):
        return False, f"not a signed head (needs {', '.join(fields)})"
    seq = head["seq"]
    name = f"signed head #{seq} (signed {head['signed_at']})"
    if key is None:
        return False, f"{name}: cannot be checked: no usable public key"
    if head["key_sha256"] != key_fingerprint(key):
        return False, f"{name}: signed with key {head['key_sha256'][:16]}, not the key of this bundle ({key_id(key)})"
    if "key_id" in head and head["key_id"] != key_id(key):  # heads signed before key ids have none
        return False, f"{name}: names key id {head['key_id']}, not the id of this key ({key_id(key)})"
    try:
        key.verify(bytes.fromhex(head["signature"]),
                   head_statement(seq=seq, hash=head["hash"], signed_at=head["signed_at"]))
    except (InvalidSignature, ValueError):
        return False, f"{name}: its signature does not verify (the head was changed)"
    seqs: list[int] = [line["seq"] for line in lines if isinstance(line.get("seq"), int)]
    if not seqs:
        return True, f"{name}: valid signature; no audit-log entries to compare it with"
    match = next((line for line in lines if line.get("seq") == seq), None)
    if match is not None:
        if match.get("hash") != head["hash"]:
            return False, (f"{name}: entry #{seq} of audit_log.jsonl is not the entry that was signed: the audit "
                           "log was rebuilt")
        return True, f"{name}: valid signature, and entry #{seq} of audit_log.jsonl is the entry that was signed"
    if seq > max(seqs):
        return False, (f"{name}: the audit log ends at #{max(seqs)}, below the signed head: entries were removed "
                       "after it was signed")
    return True, (f"{name}: valid signature; before this segment (#{min(seqs)}–#{max(seqs)}), so "
                  "verify_audit_log checks it against the whole trail")


def check_segment(lines: list[dict], *, anchor: str | None) -> tuple[bool, str]:
    """Each audit_log.jsonl line's payload matches its fields and its hash, links to the previous line, and the
    first to the anchor; a link line (an entry about another model, LINK_KEYS only) has its number and hashes in
    their place. (False, one problem per line, naming the entry) or (True, summary).

    The hash rule is monitor.trail.chain's, the one the database is checked with. Its check_chain stops at the
    first break; an auditor is told about every broken line, so the walk is done here.
    """
    problems = []
    previous_hash, previous_seq = anchor, None
    links = 0
    for index, line in enumerate(lines, start=1):
        where = f"line {line.get('_line', index)} (entry #{line.get('seq')})"
        payload = line.get("payload")
        fields = {key: line.get(key) for key in PAYLOAD_KEYS}
        link = is_link(line)
        if not (isinstance(payload, str) or link) or not isinstance(line.get("prev_hash"), str):
            problems.append(f"{where}: no payload or prev_hash (a link to another model's entry holds "
                            f"{', '.join(LINK_KEYS)} and nothing else)")
            previous_hash, previous_seq = line.get("hash"), line.get("seq")
            continue
        if not isinstance(line.get("seq"), int) or isinstance(line.get("seq"), bool):
            problems.append(f"{where}: seq is not a whole number")
            previous_hash, previous_seq = line.get("hash"), None
            continue
        if previous_seq is not None and line["seq"] != previous_seq + 1:
            problems.append(f"{where}: follows entry #{previous_seq}; entries are missing or out of order")
        if line["prev_hash"] != previous_hash:
            target = "the segment's anchor (the hash of the entry before it)" if previous_seq is None else \
                f"the hash of entry #{previous_seq}"
            problems.append(f"{where}: prev_hash does not match {target}")
        if link:
            # Only the link's place in the chain can be checked; the next entry's prev_hash holds it to its hash.
            if not isinstance(line.get("hash"), str):
                problems.append(f"{where}: a link without a hash")
            links += 1
            previous_hash, previous_seq = line.get("hash"), line.get("seq")
            continue
        if canonical_json(fields) != payload:
            problems.append(f"{where}: its fields differ from the payload the hash covers (edited)")
        if not _hashes_to(line["prev_hash"], payload, line.get("hash")):
            problems.append(f"{where}: its payload does not match its hash (edited after it was written)")
        previous_hash, previous_seq = line.get("hash"), line.get("seq")
    if problems:
        return False, "\n".join(problems)
    through = f" ({links} of them links to entries about other models or people)" if links else ""
    return True, (f"{len(lines)} entries #{lines[0].get('seq')}–#{lines[-1].get('seq')}{through}, chain intact from "
                  "its anchor")


def is_link(line: dict) -> bool:
    """A line that stands for another model's entry: its seq, prev_hash and hash and nothing else."""
    return set(line) - {"_line"} == set(LINK_KEYS)


def _hashes_to(prev_hash: str, payload: str, expected: Any) -> bool:
    """Whether `expected` is the chain's entry_hash of the payload string as written. Only the canonical JSON of
    a payload is ever hashed, so a payload in any other spelling cannot match."""
    try:
        covered = json.loads(payload)
    except (ValueError, RecursionError):
        return False
    return canonical_json(covered) == payload and entry_hash(prev_hash, covered) == expected
