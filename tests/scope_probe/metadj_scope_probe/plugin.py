"""Scope's entry point for the probe (``[project.entry-points."scope"]`` in pyproject.toml)."""

from scope.core.plugins.hookspecs import hookimpl


@hookimpl
def register_pipelines(register):
    """Register the metadj-probe pipeline; imported lazily so a broken import is reported by Scope, not fatal."""
    from .pipeline import ProbePipeline

    register(ProbePipeline)
