"""Speculative decoding on hybrid attention/SSM models (Falcon-H1 and kin).

- :mod:`~specviz.hybrid.state`: the recurrent (convolution + SSM) state of a cache; snapshots
  (cropping only the attention part of a layer is :func:`specviz.forward.crop_attention`);
- :mod:`~specviz.hybrid.rollback`: how the engine drops rejected drafts exactly (crop for
  attention-only caches, restore + replay for recurrent state);
- :mod:`~specviz.hybrid.preserve`: a wrapper that keeps self-drafting from touching the target's
  recurrent state;
- :mod:`~specviz.hybrid.components`: running a decoder layer with some of its components skipped;
- :mod:`~specviz.hybrid.component_skip`: the ``component-skip`` self-drafter;
- :mod:`~specviz.hybrid.draft_model`: a separate draft model that is itself hybrid.

See docs/hybrid.md. Submodules are imported where used, so importing this package is cheap and
free of import cycles with :mod:`specviz.drafters`.
"""
