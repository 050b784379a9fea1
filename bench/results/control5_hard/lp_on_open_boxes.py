"""How many of a search's open boxes the LP relaxation (the big-M MILP of ``properties/small_cnn/relu_milp.py`` with
its integrality dropped: the triangle relaxation, every row at once) would prove, per depth, and its CPU per box.
ctrl_128x2_prop1 of ``properties/control5_hard``; 25 open boxes per depth. Run from the repository root:
``THREADS=1 OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/results/control5_hard/lp_on_open_boxes.py``.
"""
# ruff: noqa
import sys, time, numpy as np, onnx
from onnx import numpy_helper
sys.path.insert(0, "bench/results/control5_hard"); sys.path.insert(0, "properties/small_cnn")
import search_alone, relu_milp
from nnverify.search import bab
from nnverify.spec.vnnlib import load_property
net, prop = search_alone.paths("c5h:ctrl_128x2_prop1")
m = onnx.load(net)
init = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in m.graph.initializer}
layers = [(init[f"W{k}"], init[f"B{k}"]) for k in range(3)]
p = load_property(prop, 5, 5); d = p.disjuncts[0]
# rows a_y y <= b  <=>  b - a_y y >= 0 ; maximise_min: t <= rows.y + consts
rows, consts = -d.a_y, d.b
boxes_at = {}
orig = bab.bound_boxes
def spy(graph, r, b, options, lean=False):
    out = orig(graph, r, b, options, lean)
    dead = r.dead(out[1]); op = ~np.all(dead, axis=1)
    for i in np.nonzero(op)[0]:
        boxes_at.setdefault(int(b.depth[i]), []).append((b.lb[i].copy(), b.ub[i].copy()))
    return out
bab.bound_boxes = spy
sys.argv = ["x", "c5h:ctrl_128x2_prop1"]; search_alone.main()
orig_milp = relu_milp.milp
last = {}
def lp(c, **k):
    r = orig_milp(c, **{**k, "integrality": np.zeros_like(k["integrality"])})
    last["fun"] = r.fun; last["status"] = r.status
    return r
relu_milp.milp = lp
relu_milp.search_best = lambda layers, lb, ub, rows, consts: (lb + ub) / 2
for depth in (6, 8, 10, 12):
    bx = boxes_at.get(depth, [])
    sel = bx[:: max(1, len(bx) // 25)][:25]
    t0 = time.process_time(); proven = 0
    for lb, ub in sel:
        o = relu_milp.maximise_min(layers, lb, ub, rows, consts, time_limit=5)
        proven += last['fun'] is not None and -last['fun'] < 0
    print(depth, "open", len(bx), "sampled", len(sel), "LP proves", proven, "last", last, "cpu/box %.3f" % ((time.process_time() - t0) / max(1, len(sel))), flush=True)
