from __future__ import annotations

from bench.pipeline_seed import with_application_name


def test_application_name_is_added_to_a_url_keeping_its_query() -> None:
    assert (with_application_name("postgresql://u@h:5432/db?sslmode=disable", "bench")
            == "postgresql://u@h:5432/db?sslmode=disable&application_name=bench")
    assert with_application_name("postgresql://u@h/db", "bench") == "postgresql://u@h/db?application_name=bench"
    assert (with_application_name("postgresql://u@h/db?application_name=old", "new")
            == "postgresql://u@h/db?application_name=new")
