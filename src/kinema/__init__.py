"""kinema: open-source text-to-video.

Three-line API::

    from kinema import Pipeline
    pipe = Pipeline.from_builtin()
    pipe.generate("a red ball moving left", seed=0).save("out.mp4")
"""

from kinema.errors import KinemaInputError

__version__ = "0.1.0"
__all__ = ["KinemaInputError", "Pipeline", "__version__"]


def __getattr__(name: str):  # lazy: `import kinema` must not import torch
    if name == "Pipeline":
        from kinema.engine.pipeline import Pipeline

        return Pipeline
    raise AttributeError(name)
