"""seqexplain: explain the predictions of sequence models.

One model interface (:func:`load_model`), one result type (:class:`Attribution`), many methods
(:func:`available_methods`), and :func:`explain` to tie them together.
"""

from seqexplain.startup import interruptible_start

with interruptible_start():  # torch imports for ~1.5 s: Ctrl-C in the command line is one line there too
    from seqexplain.attribution import Attribution
    from seqexplain.errors import SeqExplainError
    from seqexplain.explain import explain, explain_example, explain_many
    from seqexplain.methods.registry import MethodResult, available_methods, get_method, register
    from seqexplain.models import Example, SequenceModel, load_model

__version__ = "0.1.0"

__all__ = [
    "Attribution",
    "Example",
    "MethodResult",
    "SeqExplainError",
    "SequenceModel",
    "__version__",
    "available_methods",
    "explain",
    "explain_example",
    "explain_many",
    "get_method",
    "load_model",
    "register",
]
