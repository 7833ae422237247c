"""Log inputs: the engine and the formats it routes lines to.

Engine: `scanner` (chunked candidate-line scan), `engine` (framing, dispatch by journald
identifier or content, `run_log_parser`), `split` (two processes on big files). Formats,
listed in `registry.FORMATS`, each declaring a `registry.LogFormat`: `kubelet` (with
`kubelet_events`), `containerd`, `dockerd`, `kernel`. Kinds of `plegdoctor.parsers.PARSERS`:
`journal`, `kubelet`, `containerd`, `dockerd`. Shared helpers: `common`.
"""
