# Shared argument parsing for reproduce/*.sh: `--preset smoke|cpu|paper` and `--out DIR`.
# Sourced, not run: sets $preset (default cpu) and $out (default results); exits 2 on anything else.
preset=cpu
out=results
while [ $# -gt 0 ]; do
  case "$1" in
    --preset) preset="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "usage: $0 --preset smoke|cpu|paper [--out DIR]" >&2; exit 2 ;;
  esac
done
case "$preset" in
  smoke|cpu|paper) ;;
  *) echo "unknown preset $preset: use smoke, cpu or paper" >&2; exit 2 ;;
esac
