"""Interleaved A/B: per instance, run each code copy's `nnverify check --json`, CPU (user+sys) of the child."""
import csv, json, os, resource, subprocess, sys, time
B = "/work/shared/benchmarks/acasxu/"
copies = sys.argv[1].split(",")
want, count = sys.argv[2], int(sys.argv[3])
rows = [r for r in csv.DictReader(open(B + "expected.csv")) if r["expected"] == want]
order = [(r[0], r[1]) for r in csv.reader(open(B + "instances.csv")) if len(r) >= 2]
keys = {(r["onnx"], r["vnnlib"]) for r in rows}
order = [k for k in order if k in keys]
step = max(1, len(order) // count); todo = order[::step][:count]
if len(sys.argv) > 4: todo = [(f"onnx/ACASXU_run2a_{a}_batch_2000.onnx", f"vnnlib/prop_{b}.vnnlib") for a, b in (x.split(":") for x in sys.argv[4].split(","))]
tot = {c: [0.0, 0.0] for c in copies}
for onnx, vnn in todo:
    line = [onnx.split("run2a_")[1][:3], vnn.split("/")[1][:6]]
    for c in copies:
        env = dict(os.environ, PYTHONPATH=c, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1"); env.pop("PYTHONDONTWRITEBYTECODE", None)
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN); t0 = time.monotonic()
        p = subprocess.run(["/work/main/.venv/bin/nnverify", "check", B + onnx, B + vnn, "--timeout", "116", "--json"], capture_output=True, text=True, env=env)
        w = time.monotonic() - t0; r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
        v, _, rest = p.stdout.partition("\n")
        try: d = json.loads(rest)
        except Exception: d = {"method": p.stderr[-200:]}
        st = d.get("stats", {})
        tot[c][0] += cpu; tot[c][1] += w
        line += [v, d.get("method", ""), f"cpu {cpu:.2f}", f"wall {w:.2f}", f"beam {st.get('beam_levels', '-')}"]
    print(" ".join(map(str, line)), flush=True)
for c in copies: print(c, f"CPU {tot[c][0]:.2f} wall {tot[c][1]:.2f}")
