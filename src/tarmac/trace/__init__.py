"""Decision traces and model cards: why a model decided, and what a model is.

``trace(project, id)`` (also ``p.trace(id)`` and ``tarmac trace ID``) explains one logged
prediction: what the model saw, which version decided and how it was trained, gated and
promoted, and the per-feature contributions to its output (``tarmac.trace.explain.explain``
computes them for any loaded model and row). ``p.model_card(name)`` (also ``p.models.card``)
returns a ``ModelCard`` with ``to_markdown()`` and ``to_html()``; ``tarmac models card NAME``
writes one.

Example::

    t = p.trace("019ae8b1c4d27a3f9c0e5b11d2f4a6e8")
    print(t.summary())
"""

from tarmac.trace.card import ModelCard, model_card
from tarmac.trace.decision import DecisionTrace, FeatureUse, trace
from tarmac.trace.explain import Contribution, Explanation, NotExplainable

__all__ = [
    "Contribution",
    "DecisionTrace",
    "Explanation",
    "FeatureUse",
    "ModelCard",
    "NotExplainable",
    "model_card",
    "trace",
]
