"""Experiment script behind the search-alone table of this README (ReLU search, no racing MILP, one core).

Usage: [MODE=noprop|before|twice] python search_alone.py 256x4 11_0.05 150   (from the repo root, .venv python)
MODE=noprop replaces bounds/propagate.propagate by the identity; MODE=before also propagates before the
back-substitution; MODE=twice runs tighten twice. Prints verdict, seconds, domains, depth, closed measure.
"""
import sys, time, os
import numpy as np
from nnverify import verify, Options
import nnverify.search.relu_bab as rb
from nnverify.graph.layers import AffineLayer, ActivationLayer
from nnverify.bounds.interval import affine_interval
PASSES = int(os.environ.get("P", "2")); ORDER = os.environ.get("ORDER", "fb"); MODE = os.environ.get("MODE", "off"); WB = int(os.environ.get("WB", "1"))
D = int(os.environ.get("D", "0"))
st = {"closed": 0.0, "roots": 0, "prop_s": 0.0, "prop_n": 0, "prop_empty": 0}
MR, MA = 1e-9, 1e-12
def row_back(W, b, lz, uz, ly, uy):
    Wp, Wn = np.maximum(W, 0), np.minimum(W, 0)
    amax = uy @ Wp.T + ly @ Wn.T; amin = ly @ Wp.T + uy @ Wn.T   # (B,m)
    scale = np.abs(b) + np.maximum(np.abs(ly), np.abs(uy)) @ np.abs(W).T + np.maximum(np.abs(lz), np.abs(uz))
    slack = (MR * scale + MA)[:, :, None]
    cmax = Wp * uy[:, None, :] + Wn * ly[:, None, :]
    cmin = Wp * ly[:, None, :] + Wn * uy[:, None, :]
    lo = (lz - b - amax)[:, :, None] + cmax - slack
    hi = (uz - b - amin)[:, :, None] + cmin + slack
    ok = np.abs(W) > 1e-6
    inv = np.where(ok, 1.0 / np.where(ok, W, 1.0), 0.0)
    pos = W > 0
    a, c = lo * inv, hi * inv
    newl = np.where(ok & pos, a, np.where(ok, c, -np.inf)).max(1)
    newu = np.where(ok & pos, c, np.where(ok, a, np.inf)).min(1)
    return newl - MR * np.abs(newl) - MA, newu + MR * np.abs(newu) + MA
def propagate(graph, lbs, ubs):
    """lbs/ubs lists per layer (B,size), modified copies; returns empty mask"""
    L = graph.layers
    B = lbs[0].shape[0]
    empty = np.zeros(B, bool)
    for p in range(PASSES):
        if ORDER == 'bf': back(graph, lbs, ubs)
        if (p > 0 if ORDER == 'fb' else True):
            for k, layer in enumerate(L):
                if isinstance(layer, AffineLayer):
                    (s,) = layer.sources
                    if s == 0: continue
                    lo, hi = affine_interval([lbs[s]], [ubs[s]], layer, MR, MA)
                    lbs[k] = np.maximum(lbs[k], lo); ubs[k] = np.minimum(ubs[k], hi)
                elif isinstance(layer, ActivationLayer):
                    lbs[k] = np.maximum(lbs[k], np.maximum(lbs[layer.source], 0)); ubs[k] = np.minimum(ubs[k], np.maximum(ubs[layer.source], 0))
        if ORDER == 'bf': continue
        back(graph, lbs, ubs)
    for l, u in zip(lbs, ubs):
        empty |= np.any(l > u, axis=1)
    return empty
def back(graph, lbs, ubs):
        L = graph.layers
        for k in range(len(L) - 1, 0, -1):
            layer = L[k]
            if isinstance(layer, AffineLayer):
                (s,), (W,) = layer.sources, layer.weights
                if s == 0: continue
                nl, nu = row_back(W, layer.bias, lbs[k], ubs[k], lbs[s], ubs[s])
                lbs[s] = np.maximum(lbs[s], nl); ubs[s] = np.minimum(ubs[s], nu)
            elif isinstance(layer, ActivationLayer):
                s = layer.source
                ubs[s] = np.minimum(ubs[s], ubs[k])
                lbs[s] = np.where(lbs[k] > 0, np.maximum(lbs[s], lbs[k]), lbs[s])
orig_tighten = rb._Search.tighten
def tighten(self, dom):
    if MODE == 'before':
        sel = np.nonzero(dom.since < rb._CLEAN)[0]
        for start in range(0, sel.size, 16):
            part = sel[start:start+16]
            tight, crossed = rb.propagate(self.graph, self.bounds_of(dom, part), **self.margins)
            for s in self.pre:
                dom.lb[s][part], dom.ub[s][part] = tight.lb[s], tight.ub[s]
                dom.lb[s][part[crossed], 0] = 1.0; dom.ub[s][part[crossed], 0] = -1.0
            dom.since[part] = self.pre[0]
    if MODE == 'twice':
        ret = orig_tighten(self, dom)
        sel = np.nonzero(dom.depth > 0)[0]
        dom.since[sel] = self.pre[0]
        return ret | orig_tighten(self, dom)
    ret = orig_tighten(self, dom)
    if MODE != "pre": return ret
    t = time.time()
    sel = np.nonzero(dom.depth >= D)[0]
    if sel.size == 0: return
    for start in range(0, sel.size, 16):
        part = sel[start:start+16]
        b = self.bounds_of(dom, part)
        lbs = [np.array(v) for v in b.lb]; ubs = [np.array(v) for v in b.ub]
        empty = propagate(self.graph, lbs, ubs)
        st["prop_n"] += part.size; st["prop_empty"] += int(empty.sum())
        for s in self.pre:
            if WB:
                dom.lb[s][part] = np.maximum(dom.lb[s][part], lbs[s]); dom.ub[s][part] = np.minimum(dom.ub[s][part], ubs[s])
            e = part[empty]
            dom.lb[s][e, 0] = 1.0; dom.ub[s][e, 0] = -1.0   # mark crossing -> evaluate's empty check
    st["prop_s"] += time.time() - t
rb._Search.tighten = tighten
if MODE == 'noprop':
    rb.propagate = lambda g, b, **kw: (b, np.zeros(b.lb[0].shape[0], bool))
orig = rb._Search.evaluate
def ev(self, dom, it):
    out = orig(self, dom, it)
    best = out[0]
    if it == rb.ROOT_ITERATIONS: st["roots"] = len(dom)
    st["closed"] += float(np.sum(np.where(best > 0, 2.0 ** -dom.depth.astype(float), 0.0)))
    return out
rb._Search.evaluate = ev
net, prop, t = sys.argv[1], sys.argv[2], float(sys.argv[3])
B = "/work/shared/benchmarks/mnistfc/"
t0 = time.time()
r = verify(B + "onnx/mnist-net_" + net + ".onnx", B + "vnnlib/prop_" + prop + ".vnnlib", Options(timeout_s=t, refine_bounds=False, threads=1))
s = r.stats
print(os.environ.get("TAG"), net, prop, r.verdict, round(time.time() - t0, 1), s.get("relu_boxes"), s.get("relu_max_depth"), "closed", round(st["closed"] / max(st["roots"], 1), 4), {k: (round(v, 2) if isinstance(v, float) else v) for k, v in st.items()}, flush=True)
