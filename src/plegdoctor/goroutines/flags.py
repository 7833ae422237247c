"""The bits of `Goroutine.flags` (plegdoctor.goroutines.model re-exports them): a module of
its own so that the line reader (`lines.py`), which the goroutine-dump sniffer imports on
every run, does not import the model."""

SCAN = 1  # "(scan)" was appended to the state (GC was scanning the stack)
ELIDED = 2  # "...additional frames elided..." / "...N frames elided..."
TRUNCATED = 4  # the goroutine is incomplete: cut mid-line, or a frame lost its file line
GAP = 8  # an excerpt gap ("...", "### ... ###") inside the goroutine
ONE_LINE = 16  # came from a one-line (logrus-escaped / JSON) dump: every frame is on one source line
GP_HEADER = 32  # "goroutine N gp=0x.. m=.. mp=0x.. [...]" header (Go 1.22+, GOTRACEBACK>=system)
PROFILE = 64  # from a pprof `goroutine?debug=1` record (`N @ 0x..` + `#\t0x..` lines): no id, no state
HEADERLESS = 128  # stack frames with no `goroutine N [state]:` header above them (a pasted fragment)
SPACED = 256  # the goroutine's lines are not consecutive in the source (a double-spaced paste)
