"""The contract, `sessions.yaml`, shipped in the package as `sessions_api.openapi` so that an
installed server finds it (`sessions_api.core.resources`). This file only makes the folder a
package; the YAML is the source of truth."""
