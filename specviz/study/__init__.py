"""Studies: a TOML file naming every condition, expanded into units and run side by side.

See ``docs/studies.md``. The CLI calls :func:`load_study` and :func:`run_study`.
"""

from specviz.study.spec import Study, StudyError, load_study, parse_study

__all__ = [
    "Study",
    "StudyError",
    "StudyOutcome",
    "default_out_dir",
    "load_study",
    "parse_shard",
    "parse_study",
    "plan_study",
    "run_study",
]


def __getattr__(name: str) -> object:
    # run_study and friends import the runner (and torch); parsing a study file does not
    if name in ("run_study", "StudyOutcome", "default_out_dir"):
        from specviz.study import run

        return getattr(run, name)
    if name in ("plan_study", "parse_shard"):
        from specviz.study import units

        return getattr(units, name)
    raise AttributeError(name)
