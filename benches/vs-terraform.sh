#!/bin/sh
# Benchmark: `matih plan` against `terraform plan` on the identical graph.
#
# Generates N tenants (20 by default; the specs of benches/plan.rs), turns `matih graph` of them
# into a Terraform configuration with one `terraform_data` resource per matih resource and every
# dependency edge kept as a `depends_on`, and times, in one run, `terraform plan` of it and
# `matih plan` of the tenants (both against an empty state: everything is to be created). Prints
# the wall times (best of RUNS, 3 by default), the ratio and the cost per resource; then matih
# alone at LARGE tenants (1000 by default; 0 to skip) to show its per-resource cost stays flat.
#
#   benches/vs-terraform.sh                      # target/release/matih, 20 and 1000 tenants
#   MATIH=path/to/matih N=50 LARGE=0 RUNS=5 benches/vs-terraform.sh
#
# Needs terraform and python3 on PATH (no provider is downloaded: terraform_data is built in).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
MATIH=${MATIH:-$here/target/release/matih}
N=${N:-20}
LARGE=${LARGE:-1000}
RUNS=${RUNS:-3}
case $MATIH in /*) ;; *) MATIH=$(pwd)/$MATIH ;; esac
[ -x "$MATIH" ] || { echo "no matih binary at $MATIH (cargo build --release, or set MATIH)" >&2; exit 1; }
command -v terraform >/dev/null || { echo "terraform is not on PATH" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# gen N DIR: the tenant specs benches/plan.rs generates.
gen() {
    mkdir -p "$2"
    awk -v n="$1" -v dir="$2" 'BEGIN {
        split("free professional enterprise", tier, " "); split("eastus westeurope westus2", region, " ");
        for (i = 0; i < n; i++) {
            slug = sprintf("t%05d", i); f = dir "/" slug ".hcl";
            printf "tenant \"%s\" {\n  id          = \"%08x-0000-4000-8000-%012x\"\n", slug, i, i > f;
            printf "  tier        = \"%s\"\n  region      = \"%s\"\n", tier[i % 3 + 1], region[i % 3 + 1] > f;
            printf "  admin_email = \"admin@%s.example\"\n  services {\n    ai_service { replicas = %d }\n  }\n", slug, 1 + i % 3 > f;
            printf "  monitoring {\n    notify_email = [\"ops@%s.example\"]\n  }\n}\n", slug > f;
            close(f);
        }
    }'
}

# best DIR CMD...: of RUNS runs of CMD in DIR, the shortest wall time and the smallest CPU time
# (user + system, children included), in seconds: "WALL CPU". CPU time is what to compare on a
# busy machine, where wall time mostly measures the wait for a core. Timed by python3 (a clock
# and wait4's usage in microseconds): /usr/bin/time counts in hundredths of a second, as much as
# half of a 20-tenant matih plan.
best() {
    dir=$1; shift
    python3 - "$dir" "$RUNS" "$work/err" "$@" <<'PY' || exit 1
import os, subprocess, sys, time
dir, runs, err, cmd = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
wall = cpu = None
for _ in range(runs):
    with open(os.devnull, "wb") as null, open(err, "wb") as e:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, cwd=dir, stdout=null, stderr=e)
        _, status, usage = os.wait4(p.pid, 0)
        w = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        sys.stderr.write("failed: %s\n%s" % (" ".join(cmd), "".join(open(err).readlines()[-20:])))
        sys.exit(1)
    c = usage.ru_utime + usage.ru_stime
    wall = w if wall is None else min(wall, w)
    cpu = c if cpu is None else min(cpu, c)
print("%.6f %.6f" % (wall, cpu))
PY
}

# matih_plan N: best wall time of `matih plan` of N tenants against an empty state.
matih_plan() {
    d=$work/m$1
    gen "$1" "$d/tenants"
    best "$d" env MATIH_IN_AUTOMATION=1 "$MATIH" plan tenants
}

gen "$N" "$work/g/tenants"
(cd "$work/g" && "$MATIH" graph tenants) > "$work/graph.dot"
mkdir -p "$work/tf"
# DOT → HCL: node ids "slug/kind.name" become terraform_data resources named slug__kind__name;
# an edge "a" -> "b" (b depends on a) becomes b's depends_on entry.
awk '
    function id(s) { gsub(/"/, "", s); gsub(/[^A-Za-z0-9_-]/, "__", s); return "r_" s }
    /^ *"[^"]*" \[label=/ { n = id($1); order[++nodes] = n; next }
    /^ *"[^"]*" -> "[^"]*"/ { from = id($1); to = id($3); deps[to] = deps[to] "    terraform_data." from ",\n"; edges++; next }
    END {
        for (i = 1; i <= nodes; i++) {
            n = order[i];
            printf "resource \"terraform_data\" \"%s\" {\n  input = \"%s\"\n", n, n;
            if (n in deps) printf "  depends_on = [\n%s  ]\n", deps[n];
            printf "}\n\n";
        }
        printf "%d resources, %d dependency edges\n", nodes, edges > "/dev/stderr";
    }' "$work/graph.dot" > "$work/tf/main.tf" 2> "$work/tf-shape"
(cd "$work/tf" && terraform init -input=false >"$work/init" 2>&1) || { cat "$work/init" >&2; exit 1; }
resources=$(awk '{print $1}' "$work/tf-shape")
edges=$(awk '{print $3}' "$work/tf-shape")

tf=$(best "$work/tf" terraform plan -input=false -lock=false)
m=$(matih_plan "$N")
echo "vs-terraform: $N tenants = $resources resources, $edges dependency edges (the same graph in both); best of $RUNS; $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
awk -v tf="$tf" -v m="$m" -v r="$resources" 'BEGIN {
    split(tf, t, " "); split(m, k, " ")
    printf "%-16s %9s %9s %16s\n", "", "wall ms", "CPU ms", "CPU per resource"
    printf "%-16s %9.1f %9.1f %13.1f µs\n", "terraform plan", t[1] * 1e3, t[2] * 1e3, t[2] / r * 1e6
    printf "%-16s %9.1f %9.1f %13.1f µs\n", "matih plan", k[1] * 1e3, k[2] * 1e3, k[2] / r * 1e6
    printf "matih is %.0f× faster in wall time, %.0f× in CPU time\n", t[1] / k[1], t[2] / k[2]
}'
if [ "$LARGE" -gt 0 ]; then
    ml=$(matih_plan "$LARGE")
    rl=$(cd "$work/m$LARGE" && "$MATIH" validate tenants | sed -n 's/.*(\([0-9]*\) resources).*/\1/p')
    awk -v m="$ml" -v r="$rl" -v n="$LARGE" 'BEGIN {
        split(m, k, " ")
        printf "%-16s %9.1f %9.1f %13.1f µs   (%d tenants, %d resources)\n", "matih plan", k[1] * 1e3, k[2] * 1e3, k[2] / r * 1e6, n, r
    }'
fi
