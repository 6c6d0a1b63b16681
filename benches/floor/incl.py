"""Per-request cost by function and by library, from two callgrind profiles of the same binary
(N=1000 and N=4000 requests): (cost(4000) - cost(1000)) / 3000, so start-up and shutdown cancel.

usage: incl.py OUT_1000 OUT_4000 [TOP]   (needs callgrind_annotate on the PATH)
Prints: the top TOP functions by inclusive cost per request (summed over the source files
callgrind splits a function into, i.e. its own and its inlined code), then self cost per request
grouped by where the code comes from (crate of the source file; glibc's malloc/free/memcpy apart)."""
import collections, re, subprocess, sys
a_path, b_path = sys.argv[1], sys.argv[2]
top = int(sys.argv[3]) if len(sys.argv) > 3 else 25
LINE = re.compile(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*?)( \[[^\]]*\])?$")

def table(path, inclusive):
    text = subprocess.run(["callgrind_annotate", f"--inclusive={'yes' if inclusive else 'no'}", "--threshold=100",
                           "--auto=no", path], capture_output=True, text=True, check=True).stdout
    by_fn, by_file_fn, total = collections.Counter(), collections.Counter(), 0
    for line in text.splitlines():
        m = LINE.match(line)
        if not m: continue
        ir, rest = int(m.group(1).replace(",", "")), m.group(2)
        if rest == "PROGRAM TOTALS": total = ir; continue
        file, _, fn = rest.partition(":")
        # Inclusive: the entry tagged with its object ("[binary]") is the whole function; the
        # untagged entries are the parts of it inlined from other files (subsets, not a split).
        # Self: all entries, a partition by source file.
        if m.group(3) or not inclusive: by_fn[fn] += ir
        by_file_fn[(file, fn)] += ir
    return total, by_fn, by_file_fn

def per(a, b, key): return (b.get(key, 0) - a.get(key, 0)) / 3000

ta, ia, _ = table(a_path, True); tb, ib, _ = table(b_path, True)
print(f"total per request: {(tb - ta) / 3000:,.0f} instructions\n")
print(f"top {top} functions, inclusive instructions per request (thread entry points and runtime loops included):")
rows = sorted(set(ia) | set(ib), key=lambda f: -per(ia, ib, f))[:top]
for f in rows: print(f"{per(ia, ib, f):10,.0f}  {f[:200]}")

EGRESSD = {"proxy", "audit", "policy", "serve", "resolve", "metrics", "heap", "egressd", "dnsstub"}
def crate_of(fn):
    """hyper::a::b -> hyper; <hyper::X as core::F>::poll -> hyper; core::ptr::drop_in_place<proxy::T> -> proxy."""
    names = re.findall(r"(?:^|[<\s(,&*])([A-Za-z_][A-Za-z0-9_]*)::", fn)  # path roots only
    for n in names:
        if n not in ("core", "alloc", "std"): return n.replace("_", "-")
    return "core"

def origin(file, fn):
    if re.search(r"malloc|free|realloc|calloc|_int_|tcache|arena|memalign", fn) and ("malloc" in file or file == "???"):
        return "glibc malloc/free"
    if re.search(r"mem(cpy|move|set|cmp)|strlen|__memc|__mems", fn): return "glibc mem*/str*"
    if "hyper_floor" in file or fn.startswith("hyper_floor::"): return "floor example's own code"
    m = re.search(r"registry/src/[^/]+/([A-Za-z0-9_\-]+?)-\d+\.\d+\.\d+", file)
    if m: return m.group(1)
    m = re.search(r"/work/[^ ]*?/([a-z]+)/src/", file)
    if m: return "egressd:" + m.group(1)
    m = re.search(r"/rust/deps/([A-Za-z0-9_\-]+?)-\d+\.\d+\.\d+", file)
    if m: return m.group(1) + " (std's copy)"
    if "/work/" in file and "/src/" in file: return "egressd:src"
    if file.startswith("/rustc/"):  # std/core/alloc generic code: charge the function's crate
        c = crate_of(fn)
        return ("egressd:" + c) if c in EGRESSD else c if c not in ("core", "alloc", "std") else "rust std/core/alloc"
    if file.startswith("./") or "glibc" in file or "nptl" in file or "sysdeps" in file: return "glibc other"
    return "other: " + file[:60]

_, _, sa = table(a_path, False); _, _, sb = table(b_path, False)
groups = collections.Counter()
for key in set(sa) | set(sb): groups[origin(*key)] += per(sa, sb, key)
print("\nself instructions per request, by origin of the code:")
for g, v in groups.most_common():
    if abs(v) >= 5: print(f"{v:10,.0f}  {g}")
