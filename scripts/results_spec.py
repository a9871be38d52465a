"""What docs/results.md shows for each reproduction experiment: its tables, figure, the papers' numbers
(quoted from the thesis) and the papers' claims, each checked against the measured means by a function.
The thresholds of each check are part of the claim's text, so a reader can see what "holds" means."""
from __future__ import annotations

from results_page import Claim, Experiment, above, stat
from sparse_exp.report import tune
from sparse_exp.report.runs import lookup

QS = (0.9, 0.99, 0.995, 0.999)

HEADER_NOTES = """
## Setup and every difference from the papers

- **Data.** Fashion-MNIST (the Debian package `dataset-fashion-mnist`, the only real dataset available offline
  here) instead of MNIST; 54,000 training / 6,000 validation (seeded 9/1 split) / 10,000 test images, no augmentation.
  Fashion-MNIST is a harder task than MNIST and the schedule is short, so absolute accuracies are far below the
  papers' everywhere; the comparisons between methods are what is checked.
- **Models.** The papers' LeNet-300-100 (Table A.1) and LeNet-5-Caffe (Table A.2), Xavier-normal (chapter 3/4).
- **Schedule.** Table A.9's MNIST setup (SGD, batch 100, LR 0.1, momentum 0.9, weight decay 5e-4, LR x0.1 every
  25,000 of 135,000 iterations) shortened with the same shape: LeNet-5-Caffe 1 epoch (540 iterations, LR x0.1 every
  100; `trainer=repro_lenet5`), LeNet-300-100 5 epochs (2,700 iterations, LR x0.1 every 500; `trainer=repro_lenet300`).
  Every method of a comparison shares the schedule and the seeds 0, 1, 2. The reported test accuracy is the one at
  the epoch with the best validation accuracy (for 1-epoch runs: the final one).
- **Chapter 4** scores with 20 batches of 100 samples (section 4.4: 100 batches; 100 would cost about 25 more
  minutes here, mostly GraSP's Hessian-vector products); the alpha grid is reduced from 14 values to {0.5, 0.9, 0.99}
  for Table 4.1 and to 7 values for Fig. 4.6; Fig. 4.8 uses #T in {1, 10} and q = 0.99 (the thesis does not state
  its q). Table 4.1 of the thesis is VGG-16 on CIFAR-10; the table here has its shape on LeNet-5-Caffe.
- **Chapter 5** (Fig. 5.5 is VGG-16/CIFAR-10 and ResNet/ImageNet in the thesis): LeNet-5-Caffe with one filter
  basis per layer (`sharing=fine`), Kaiming-normal spatial filters for SP and IP (`init=standard` for IP starts
  from exactly the SP network), LR 0.01 for SP and IP (LeNet-5 has no BatchNorm; at 0.1 interspace training stalls
  or diverges), SET updates every 50 iterations.
- **Other methods** (LTH, RigL, GMP, FT) run on LeNet-300-100 at q = 0.9 with its 5-epoch schedule: LTH would need
  12 trainings per seed, too many for LeNet-5 here. LTH rewinds to iteration 50 (the papers: 500 of a far longer
  run), RigL updates every 100 iterations, GMP prunes from iteration 270 to 2,025 every 100, FT trains 5 dense
  epochs then 5 fine-tuning epochs.
- **What a longer budget would add:** the full 250-epoch schedule (a LeNet-5-Caffe epoch takes about a minute on
  one core here, so about 4 hours per run; docs/full_scale.md for GPUs), MNIST itself, 5 seeds, 100 scoring batches
  and the full alpha grid in chapter 4, q = 0.995 for the COPS comparison, and the CIFAR/ImageNet experiments with
  their presets (docs/full_scale.md).
"""


def _fmt_q(q: float) -> str:
    return f"{q:g}"


# chapter 3 -------------------------------------------------------------------------------------------
def _freezenet_far_above_snip(runs):
    f, s = stat(runs, model__name="lenet5", method__name="freezenet", method__compression=0.999), \
        stat(runs, model__name="lenet5", method__name="snip", method__compression=0.999)
    return above(f, s, 0.10), f"LeNet-5 at q = 0.999: FreezeNet {f}, SNIP {s}"


def _freezenet_not_below(runs):
    worse = []
    for model in ("lenet300", "lenet5"):
        for q in (0.99, 0.995, 0.999):
            f = stat(runs, model__name=model, method__name="freezenet", method__compression=q)
            s = stat(runs, model__name=model, method__name="snip", method__compression=q)
            if f.n and s.n and f.mean < s.mean:
                worse.append(f"{model} q = {q:g}: FreezeNet {f} < SNIP {s}")
    if not runs:
        return None, "no runs"
    return (not worse), ("; ".join(worse) if worse else "FreezeNet's mean is above SNIP's at all six points")


def _close_at_q09(runs):
    parts, ok = [], True
    for model in ("lenet300", "lenet5"):
        f = stat(runs, model__name=model, method__name="freezenet", method__compression=0.9)
        s = stat(runs, model__name=model, method__name="snip", method__compression=0.9)
        if not (f.n and s.n):
            return None, "not measured"
        ok &= abs(f.mean - s.mean) <= 0.01
        parts.append(f"{model}: FreezeNet {f}, SNIP {s}")
    return ok, "; ".join(parts)


def _biases_only(runs):
    f = stat(runs, model__name="lenet300", method__name="freezenet", method__compression=1.0)
    f5 = stat(runs, model__name="lenet5", method__name="freezenet", method__compression=1.0)
    return (f.mean > 0.2 if f.n else None), f"FreezeNet at q = 1: LeNet-300-100 {f}, LeNet-5 {f5}; chance is 10%"


PAPER_SIZES = {0.9: (170.7, 9.9), 0.99: (19.1, 88.2), 0.995: (10.7, 157.4), 0.999: (3.9, 431.8)}


def _sizes(runs):
    """Sizes are counts: trained values x 4 bytes. Where the paper's differ, say how many values theirs imply."""
    diffs, seen = [], 0
    for q, (kb, factor) in PAPER_SIZES.items():
        for run in runs:
            if lookup(run, "model.name") == "lenet5" and lookup(run, "method.name") == "freezenet" \
                    and lookup(run, "method.compression") == q and run.get("storage"):
                seen += 1
                got_kb, got_f = run["storage"]["trained_values_kb"], run["storage"]["compression_factor"]
                if round(got_kb, 1) != kb or round(got_f, 1) != factor:
                    ours = round(got_kb * 1024 / 4)
                    # the printed kB where it differs from ours, else the factor (more digits)
                    theirs = round(kb * 1024 / 4) if round(got_kb, 1) != kb else \
                        round(run["storage"]["dense_kb"] / factor * 1024 / 4)
                    diffs.append(f"q = {q:g}: {got_kb:.1f} kB / x{got_f:.1f} vs {kb} kB / x{factor} (ours: {ours:,} trained "
                                 f"values; the paper's figures imply about {theirs:,})")
                break
    if not seen:
        return None, "no FreezeNet LeNet-5 run"
    return not diffs, ("; ".join(diffs) if diffs else
                       "170.7 / 19.1 / 10.7 / 3.9 kB and x9.9 / x88.2 / x157.4 / x431.8 at q = 0.9 / 0.99 / 0.995 / 0.999, "
                       "dense 1,683.9 kB, as printed")


# chapter 3, Fig. 3.4(b) and 3.6 ------------------------------------------------------------------------
def _random_freezing_worse(runs):
    s = stat(runs, init__name="xavier_normal", method__criterion="snip")
    r = stat(runs, init__name="xavier_normal", method__criterion="random")
    return above(s, r, 0.01), f"SNIP-chosen {s}, random {r}"


def _inits_equivalent(runs):
    stats = {i: stat(runs, init__name=i, method__criterion="snip") for i in ("xavier_normal", "kaiming_uniform", "pm_sigma")}
    if not all(s.n for s in stats.values()):
        return None, "not all initialisations measured"
    means = [s.mean for s in stats.values()]
    return max(means) - min(means) <= 0.02, ", ".join(f"{k} {v}" for k, v in stats.items())


def _reinit_harmless(runs):
    a, b = stat(runs, method__reinit=False), stat(runs, method__reinit=True)
    return (b.mean >= a.mean - 0.01 if a.n and b.n else None), f"FreezeNet {a}, FreezeNet-reinit {b}"


# chapter 4 -----------------------------------------------------------------------------------------------
def _tuned(runs, method: str):
    rows = tune([r for r in runs if lookup(r, "method.name") == method], ["method.alpha"], "method.alpha", ("test_acc",))
    return rows[0] if rows else None


def _gcops_best(runs):
    g = _tuned(runs, "g_cops")
    s, gr = stat(runs, method__name="snip"), stat(runs, method__name="grasp")
    if not g:
        return None, "no G-COPS runs"
    gm = g["test_acc_mean"]
    return gm >= max(s.mean, gr.mean) - 0.005, (f"G-COPS (alpha = {g['best method.alpha']:g} by validation) "
                                                f"{100 * gm:.2f}%, SNIP {s}, GraSP {gr}")


def _ucops_vs_snip(runs):
    u, s = _tuned(runs, "u_cops"), stat(runs, method__name="snip")
    if not u:
        return None, "no U-COPS runs"
    return u["test_acc_mean"] >= s.mean - 0.005, f"U-COPS (alpha = {u['best method.alpha']:g}) {100 * u['test_acc_mean']:.2f}%, SNIP {s}"


def _monotone(values):
    return all(b >= a - 1e-9 for a, b in zip(values, values[1:]))


def _similarity_monotone(runs):
    parts, ok = [], True
    for q in (0.9, 0.995):
        alphas = sorted({lookup(r, "method.alpha") for r in runs if lookup(r, "method.compression") == q})
        if not alphas:
            return None, "no masks"
        to_snip = [stat(runs, "cops.sim_target", method__compression=q, method__alpha=a).mean for a in alphas]
        to_grasp = [stat(runs, "cops.sim_control", method__compression=q, method__alpha=a).mean for a in alphas]
        ok &= _monotone(to_grasp) and _monotone([-v for v in to_snip])
        parts.append(f"q = {q:g}: sim to SNIP {to_snip[0]:.3f} -> {to_snip[-1]:.3f}, to GraSP {to_grasp[0]:.3f} -> {to_grasp[-1]:.3f}")
    return ok, "; ".join(parts) + " over alpha = 0.05 ... 0.9999 (means over 3 seeds)"


def _snip_grasp_overlap(runs):
    a = stat(runs, "cops.sim_target_control", method__compression=0.9)
    b = stat(runs, "cops.sim_target_control", method__compression=0.995)
    if not (a.n and b.n):
        return None, "no masks"
    return a.mean > 0.2 and b.mean > 0.2 and b.mean < a.mean, f"sim(SNIP, GraSP) = {a.mean:.3f} at q = 0.9, {b.mean:.3f} at q = 0.995"


def _usnip_few_classes(runs):
    u, s = stat(runs, method__name="usnip", method__score_classes=1), stat(runs, method__name="snip", method__score_classes=1)
    return above(u, s), f"#T = 1: USNIP {u}, SNIP {s}"


def _snip_all_classes(runs):
    u, s = stat(runs, method__name="usnip", method__score_classes=10), stat(runs, method__name="snip", method__score_classes=10)
    return above(s, u), f"#T = 10: SNIP {s}, USNIP {u}"


def _ucops_best(runs):
    parts, ok = [], True
    for t in (1, 10):
        u = stat(runs, method__name="u_cops", method__score_classes=t)
        s = stat(runs, method__name="snip", method__score_classes=t)
        us = stat(runs, method__name="usnip", method__score_classes=t)
        if not (u.n and s.n and us.n):
            return None, "not measured"
        ok &= u.mean >= max(s.mean, us.mean)
        parts.append(f"#T = {t}: U-COPS {u}, SNIP {s}, USNIP {us}")
    return ok, "; ".join(parts)


# chapter 5 -----------------------------------------------------------------------------------------------
def _ip_beats_sp(method: str):
    def check(runs):
        parts, ok = [], True
        for q in (0.9, 0.99):
            ip = stat(runs, method__name=method, sharing__name="fine", method__compression=q)
            sp = stat(runs, method__name=method, sharing__name="none", method__compression=q)
            if not (ip.n and sp.n):
                return None, "not measured"
            if max(ip.mean, sp.mean) < 0.2:  # both within 10 points of chance: the order says nothing
                parts.append(f"q = {q:g}: IP {ip}, SP {sp}, both near chance, so this point is left out")
                continue
            ok &= ip.mean >= sp.mean
            parts.append(f"q = {q:g}: IP {ip}, SP {sp}")
        return ok, "; ".join(parts)
    return check


def _std_onb_similar(runs):
    st, onb, rnd = (stat(runs, init__name=i) for i in ("standard", "onb", "random"))
    return (abs(st.mean - onb.mean) <= 0.01 if st.n and onb.n else None), f"standard {st}, ONB {onb}, random {rnd}"


# other methods -----------------------------------------------------------------------------------------
def _ft_rigl_gmp(runs):
    ft, rigl, gmp = (stat(runs, method__name=m) for m in ("ft", "rigl", "gmp"))
    if not (ft.n and rigl.n and gmp.n):
        return None, "not measured"
    return ft.mean >= rigl.mean >= gmp.mean, f"FT {ft}, RigL {rigl}, GMP {gmp}"


def _lth_above_gmp(runs):
    lth, gmp = stat(runs, method__name="lth"), stat(runs, method__name="gmp")
    return above(lth, gmp), f"LTH {lth}, GMP {gmp}"


PIVOT = dict(by=["model.name", "method.name", "method.compression"], pivot_keys=("method.name", "method.compression"),
             metrics=["test_acc"])

EXPERIMENTS = [
    Experiment(
        name="repro_fig3_3", title="Chapter 3: SNIP vs FreezeNet (Fig. 3.3, Table 3.2)",
        what="SNIP and FreezeNet over q on LeNet-300-100 and LeNet-5-Caffe, FreezeNet at q = 1 and the dense baselines (q = 0).",
        report=dict(PIVOT, caption="Test accuracy (%), methods down, q across"),
        extra_tables=[dict(by=["model.name", "method.name", "method.compression"],
                           metrics=["test_acc", "compression.q_beta", "storage.trained_values_kb", "storage.compression_factor"],
                           caption="Table 3.2's columns (q_beta, trained values in kB as 32-bit floats, compression factor vs dense)")],
        figure=dict(x="remaining", series=["method.name"], facets=["model.name"], title="Fig. 3.3 at CPU scale (Fashion-MNIST)"),
        paper="""Table 3.2 (LeNet-5-Caffe, MNIST, 5 seeds; SNIP / FreezeNet test accuracy): q = 0.9: 99.24% / 99.37%;
q = 0.99: 98.80% / 98.94%; q = 0.995: 98.02% / 98.55%; q = 0.999: 20.57% / 95.61%; dense 99.36%. Network sizes
1,683.9 kB (dense), 170.7 / 19.1 / 10.7 / 3.9 kB, compression factors 9.9 / 88.2 / 157.4 / 431.8.
Fig. 3.3 / section 3.4.1.1: both methods match for q <= 0.95; above, FreezeNet exceeds SNIP; LeNet-300-100 with only
the biases trained (q = 1) reaches 56.2% while SNIP degenerates to random guessing.""",
        claims=[
            Claim("FreezeNet stays far above SNIP at q = 0.999 (Table 3.2: 95.61% vs 20.57%; checked: by more than 10 points)", _freezenet_far_above_snip),
            Claim("For q >= 0.99 FreezeNet is not below SNIP on either network (Fig. 3.3; checked: every mean)", _freezenet_not_below),
            Claim("At q = 0.9 the two are equivalent (Table 3.2: 0.13 points apart; checked: within 1 point)", _close_at_q09,
                  why_not="LeNet-300-100 matches; on LeNet-5-Caffe SNIP's seeds spread widely after one epoch (see its std), "
                          "which the papers' 250 epochs average out. No tool defect found: both use the same SNIP "
                          "scores (one batch, Algorithm 3.1) and the same mask size."),
            Claim("Training only the biases (q = 1) learns well above chance (LeNet-300-100: 56.2%; checked: above 20%)", _biases_only),
            Claim("Table 3.2's network sizes and compression factors (functions of q and the architecture only)", _sizes),
        ],
        notes="""The sizes here are exact counts: floor((1 - q) * 430,500) trained weights plus the 580 biases, 4 bytes each
(a FreezeNet stores nothing else but the 32-bit seed; a SNIP network the same values, the rest being zero). Where
Table 3.2 differs in the last digit, its compression factor corresponds to a slightly different number of trained
values (listed above; more at q = 0.9 and 0.995, fewer at q = 0.999), i.e. a different rounding of the kept count
in the paper's code, not a difference in the method; q_beta agrees with Table 3.2 to its three printed digits.""",
    ),
    Experiment(
        name="repro_fig3_4b", title="Chapter 3: initialisations and random freezing (Fig. 3.4(b))",
        what="FreezeNet at q = 0.995 on LeNet-5-Caffe with three initialisations, and with a random freezing mask.",
        report=dict(by=["init.name", "method.criterion"], metrics=["test_acc", "best_val_acc"]),
        paper="""Fig. 3.4(b) (LeNet-5-Caffe, MNIST, q from 0.99 to 0.999; plotted, no table): "randomly choosing the freezing
mask lowers the performance ... significantly"; "the three random initializations perform almost equivalent, where the
Xavier-normal initialization shows the best results for high compression rates"; the 1-bit +-sigma initialisation is
"not significantly worse".""",
        claims=[
            Claim("Random freezing is worse than SNIP-chosen freezing (checked: by more than 1 point)", _random_freezing_worse),
            Claim("Xavier-normal, Kaiming-uniform and +-sigma perform almost equivalently (checked: means within 2 points)", _inits_equivalent,
                  why_not="+-sigma matches Xavier-normal (same variance by construction); Kaiming-uniform falls behind. "
                          "Its frozen weights are larger (std sqrt(2/fan_in): 4.6x Xavier's in conv1, 1.9x in conv2, "
                          "1.3x in fc1 of LeNet-5-Caffe), and the 0.5% trained weights get 540 iterations here to adapt "
                          "to them instead of 135,000. The initialisation itself is PyTorch's kaiming_uniform_ "
                          "(fan_in, ReLU gain), checked in tests/test_init.py; the full-length run is not done here."),
        ],
    ),
    Experiment(
        name="repro_fig3_6", title="Chapter 3: FreezeNet-reinit (Fig. 3.6)",
        what="FreezeNet vs FreezeNet with the weights drawn anew after the freezing mask, q = 0.995, LeNet-5-Caffe.",
        report=dict(by=["method.reinit"], metrics=["test_acc", "best_val_acc"]),
        paper="""Fig. 3.6 (LeNet-5-Caffe, MNIST; plotted): "reinitializing the weights after the freezing mask has been computed
does not harm performance".""",
        claims=[Claim("Reinitialising after the mask does not harm (checked: reinit mean at most 1 point below)", _reinit_harmless)],
    ),
    Experiment(
        name="repro_table4_1", title="Chapter 4: SNIP, GraSP, G-COPS, U-COPS (a Table 4.1-shaped table)",
        what="LeNet-5-Caffe at q = 0.99, 20 scoring batches; COPS over alpha in {0.5, 0.9, 0.99}, alpha chosen by the "
             "best mean validation accuracy (section 4.4.2).",
        report=dict(by=["method.name", "method.alpha"], tune_key="method.alpha", metrics=["test_acc"],
                    caption="Tuned (section 4.4.2): per method, the alpha with the best mean validation accuracy and its test accuracy"),
        extra_tables=[dict(by=["method.name", "method.alpha"], metrics=["test_acc", "best_val_acc"], caption="Every alpha")],
        paper="""Table 4.1 (VGG-16, CIFAR-10; test accuracy, 5 seeds, alpha chosen by validation) at q = 0.99: SNIP 86.34%,
GraSP 88.84%, G-COPS 89.12% (alpha 0.99999); at q = 0.995: SNIP 10.00%, GraSP 76.82%, G-COPS 82.67%. Section 4.4.3:
U-COPS improves on SNIP and USNIP.""",
        claims=[
            Claim("G-COPS is at least as good as the better of SNIP and GraSP (Table 4.1; checked: within 0.5 points or above)", _gcops_best,
                  why_not="here SNIP is the better of the two at q = 0.99, so balancing it towards GraSP cannot gain: "
                          "COPS helps where SNIP's gradient flow collapses (Table 4.1 at q = 0.99 on VGG-16 has SNIP "
                          "2.5 points below GraSP). On LeNet-5-Caffe SNIP only starts to collapse above q = 0.99 (see "
                          "the chapter 3 table: large spread at q = 0.995, chance at 0.999), so q = 0.99 was too low "
                          "a rate to show the effect; we did not rerun at another q after seeing this. The alpha "
                          "grid is also coarse (3 values), and the tuning protocol picks by validation accuracy."),
            Claim("U-COPS is at least as good as SNIP (section 4.4.3; checked: within 0.5 points or above)", _ucops_vs_snip),
        ],
    ),
    Experiment(
        name="repro_fig4_6", title="Chapter 4: mask similarity along alpha (Fig. 4.6)",
        what="G-COPS masks only (dry runs) at q = 0.9 and 0.995; similarity eq. 4.29 to the SNIP mask m(0) and the GraSP mask m(1).",
        report=dict(by=["method.compression", "method.alpha"], metrics=["cops.sim_target", "cops.sim_control", "cops.sim_target_control"],
                    caption="Similarity to SNIP (sim_target), to GraSP (sim_control) and between SNIP and GraSP"),
        figure=dict(x="method.alpha", series=["method.compression"], facets=[], metric="cops.sim_control",
                    title="Fig. 4.6 at CPU scale: similarity of G-COPS to the GraSP mask"),
        paper="""Fig. 4.6 (VGG-16, CIFAR-10, q = 0.9 and 0.995; plotted): sim(m(0), m(alpha)) decreases and sim(m(alpha), m(1))
increases monotonically with alpha; sim(m(0), m(1)) > 0.2 at both q and lower at q = 0.995 than at 0.9.""",
        claims=[
            Claim("Similarity to SNIP falls and to GraSP rises monotonically with alpha (checked: means over seeds)", _similarity_monotone),
            Claim("SNIP and GraSP masks overlap (> 0.2) and overlap less at the higher q", _snip_grasp_overlap),
        ],
    ),
    Experiment(
        name="repro_fig4_8", title="Chapter 4: partial class information (Fig. 4.8)",
        what="SNIP, USNIP and U-COPS (alpha 0.9) scoring with the samples of #T classes, LeNet-5-Caffe at q = 0.99.",
        report=dict(by=["method.name", "method.score_classes"], pivot_keys=("method.name", "method.score_classes"), metrics=["test_acc"],
                    caption="Test accuracy (%), methods down, #T across"),
        paper="""Fig. 4.8 (LeNet-5-Caffe, MNIST; plotted): SNIP is stable for 5 <= #T <= 10 and drops steeply below;
"USNIP shows worse results than SNIP for 5 <= #T <= 10. However, if less class information is available, USNIP exceeds
SNIP"; "U-COPS with alpha = 0.9 improves results compared to both, SNIP and USNIP for all sizes of T".""",
        claims=[
            Claim("With one class (#T = 1) USNIP beats SNIP", _usnip_few_classes,
                  why_not="one-class scoring is applied (the masks differ: one-class SNIP keeps 0.56-0.59% of fc1, "
                          "all-class SNIP 0.24-0.36%; per-layer densities in the runs' metrics.json), but at q = 0.99 "
                          "one-class SNIP has not collapsed on LeNet-5-Caffe (0.8 points below all-class SNIP), so the "
                          "steep drop below #T = 5 that the thesis shows, where USNIP overtakes SNIP, does not occur at "
                          "this q and schedule; the two means are within the seed-to-seed spread (3 seeds). Not re-run "
                          "at a higher q: choosing the setting after seeing the result is what this page must not do."),
            Claim("With all classes (#T = 10) SNIP beats USNIP", _snip_all_classes,
                  why_not="the two means are 0.2 points apart with standard deviations near 0.8: with 3 seeds and "
                          "one short epoch the runs do not order the two scores at all."),
            Claim("U-COPS is at least as good as both SNIP and USNIP at every #T", _ucops_best,
                  why_not="with all classes U-COPS is the best of the three; with one class it is about a point "
                          "below SNIP with the largest spread of all (one seed far below the other two), i.e. within "
                          "the noise of 3 seeds."),
        ],
    ),
    Experiment(
        name="repro_fig5_5", title="Chapter 5: interspace vs spatial pruning, SNIP and SET (a Fig. 5.5-shaped comparison)",
        what="SP and IP (one filter basis per layer) versions of SNIP and SET on LeNet-5-Caffe at q = 0.9 and 0.99, LR 0.01.",
        report=dict(by=["method.name", "sharing.name", "method.compression"], metrics=["test_acc", "best_val_acc", "final_train_acc"]),
        figure=dict(x="remaining", series=["sharing.name"], facets=["method.name"], title="SP (none) vs IP (fine) at CPU scale"),
        paper="""Fig. 5.5 (VGG-16/CIFAR-10 and ResNet/ImageNet; plotted) and Fig. 5.7 (SET, VGG-16/CIFAR-10): IP is better than
SP for every PaI method and for SET, "especially for high compression rates".""",
        notes="""SET starts from a random ERK mask; at 1% density such a random LeNet-5-Caffe does not train within 540
iterations at LR 0.01 in either representation (random pruning at initialisation also loses most at high q in
Table 4.1), so q = 0.99 says nothing about SP vs IP for SET at this scale. The SP and IP runs of SET of one seed
start from the same ERK mask positions and the same spatial filters (the IP run with the standard basis).""",
        claims=[
            Claim("IP-SNIP is at least as good as SP-SNIP at each q (a q where both are near chance is left out)", _ip_beats_sp("snip")),
            Claim("IP-SET is at least as good as SP-SET at each q (a q where both are near chance is left out)", _ip_beats_sp("set")),
        ],
    ),
    Experiment(
        name="repro_fig5_9a", title="Chapter 5: interspace initialisations (Fig. 5.9(a))",
        what="IP-SNIP on LeNet-5-Caffe (fine sharing) at q = 0.99 with the standard, ONB and random filter bases of Algorithm 5.1, LR 0.01.",
        report=dict(by=["init.name"], metrics=["test_acc", "best_val_acc"]),
        paper="""Fig. 5.9(a) (VGG-16, CIFAR-10; plotted): "standard initialization and ONB initialization show similar
performance"; random bases are worse than ONB at lower q and better at the highest q = 0.995.""",
        claims=[Claim("Standard and ONB bases perform similarly (checked: within 1 point)", _std_onb_similar,
                      why_not="ONB is ahead, by less than the seed-to-seed spread of either (3 seeds), so the runs do "
                              "not separate the two; the thesis also finds ONB ahead at its highest rates, where its "
                              "dense starting bases help the gradient flow that standard (sparse) bases block.")],
        notes="""The bases are drawn from their own random stream, so all three start from the same spatial filter draws
of the seed: standard and ONB from exactly the SP network's filters (W = phi), random with those draws as
coefficients.""",
    ),
    Experiment(
        name="repro_others", title="Every other method once: LTH, RigL, GMP, FT (q = 0.9, LeNet-300-100)",
        what="Lottery tickets with rewinding, RigL, gradual magnitude pruning and fine-tuning on LeNet-300-100 at q = 0.9.",
        report=dict(by=["method.name"], metrics=["test_acc", "best_val_acc", "final_train_acc", "compression.q"]),
        paper="""Table 5.1 (ResNet50, ImageNet, SP) at p = 0.8: FT 77.02%, RigL 75.75%, GMP 75.37%; at p = 0.9: FT 75.67%,
RigL 73.88%, GMP 73.57%. Fig. 5.7 (VGG-16, CIFAR-10): LTH beats SET at high q.""",
        claims=[
            Claim("FT >= RigL >= GMP (Table 5.1's order)", _ft_rigl_gmp),
            Claim("LTH (iterative pruning with rewinding) beats one-shot-scheduled GMP", _lth_above_gmp),
        ],
    ),
]
