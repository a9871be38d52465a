"""Overrides that make every method do its characteristic work within a tiny run (a few steps):
the mask changes inside the run (DST, GMP), LTH has 3 rounds, FT pre-trains and fine-tunes, IP
needs a sharing scheme."""

EXTRA = {
    "set": ["method.update_every=2"],
    "rigl": ["method.update_every=2"],
    "gmp": ["method.reference_batch_size=null", "method.begin_step=1", "method.end_step=3", "method.update_every=1"],
    "lth": ["method.compression=0.36", "method.rewind_step=1"],
    "ft": ["method.pretrain_epochs=1", "method.finetune_epochs=1"],
    "ip": ["sharing=coarse"],
    # COPS scores with 100 batches by default (section 4.4); two keep a tiny run tiny
    **{name: ["method.score_batches=2"] for name in ("cops", "g_cops", "m_cops", "u_cops")},
}
