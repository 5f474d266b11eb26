"""Bad uploads, through the paths a user takes: the registration form (an admin, logged in, CSRF enforced),
the `register_model` command and the Django admin. Each bad file is refused with a message that names
what is wrong and where, runs nothing, inflates nothing it should not, and stores nothing: no model, no
artifact, no dataset, no "model.registered" trail entry, no upload left in the temp directory.

tests/registry/test_registration.py covers the registry itself (pickle payloads, untrusted skops types, tree
bounds, cell validation); this folder covers what reaches it from outside, and the CSV exports.
"""
