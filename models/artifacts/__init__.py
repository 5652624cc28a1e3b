"""Session artifacts: files a session produced (videos, logs, screenshots), their bytes in an
object store (core.stores).

`records`: an artifact's life through the API (declared, uploaded, completed, listed,
deleted) and the counts kept beside it (a session's `artifact_count`, an organization's
`stored_bytes`); `transfers`: the file store's uploads and downloads through this server;
`retention`: what ends (expired artifacts, abandoned uploads, orphaned objects); `storage`:
the store the settings name and where each artifact's bytes live in it.

Writers lock in one order: the artifact, then its session, then its organization.
"""
