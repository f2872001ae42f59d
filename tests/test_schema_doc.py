from pathlib import Path

from specviz.rundir.schema_doc import render


def test_schema_doc_matches_the_schema_module():
    doc = Path(__file__).parents[1] / "docs" / "schema.md"
    assert doc.read_text() == render(), (
        "regenerate: python -m specviz.rundir.schema_doc > docs/schema.md"
    )
