"""The registry holds the 18 tasks of the study with their real hub ids and sane specs."""
import pytest

from stilts_ds.data.sources import load_examples
from stilts_ds.errors import StiltsError
from stilts_ds.metrics import METRICS
from stilts_ds.tasks.formats import FORMATS
from stilts_ds.tasks.registry import TASKS, get_task, resolve_tasks

INTERMEDIATE = ["anli_plus", "mnli", "qqp", "squad_v1", "squad_v2", "hellaswag", "cosmosqa", "commonsenseqa", "ccg"]
XTREME = ["xnli", "pawsx", "udpos", "panx", "xquad", "mlqa", "tydiqa", "bucc", "tatoeba"]


def test_all_eighteen_tasks_registered():
    assert [s.name for s in resolve_tasks(["intermediate"])] == INTERMEDIATE
    # XTREME-R's own target tasks carry kind "xtreme" too (phases 2/3 accept that kind only).
    assert [s.name for s in resolve_tasks(["xtreme"])] == XTREME + ["xcopa", "mewslix", "lareqa"]
    for spec in TASKS.values():
        assert spec.format in FORMATS
        assert spec.metric in METRICS


def test_hub_sources_name_real_datasets():
    parts = get_task("anli_plus").hub_parts("train", "en")
    assert {p.path for p in parts} == {"facebook/anli", "nyu-mll/glue", "stanfordnlp/snli"}
    assert [p.split for p in parts if p.path == "facebook/anli"] == ["train_r1", "train_r2", "train_r3"]
    assert get_task("xnli").hub_parts("train", "en")[0].name == "mnli"
    xnli_test = get_task("xnli").hub_parts("test", "zh")[0]
    assert (xnli_test.path, xnli_test.name, xnli_test.where) == ("google/xtreme", "XNLI", ("language", "zh"))
    assert get_task("xquad").hub_parts("train", "en")[0].path == "rajpurkar/squad"
    assert get_task("mlqa").hub_parts("test", "hi")[0].name == "MLQA.hi.hi"
    assert get_task("udpos").hub_parts("test", "af")[0].name == "udpos.Afrikaans"
    assert get_task("tatoeba").hub_parts("test", "zh")[0].name == "tatoeba.cmn"
    assert get_task("tydiqa").hub_parts("test", "ar")[0].id_prefix == "arabic-"
    assert get_task("ccg").hub_parts is None


def test_xtreme_language_lists_match_the_benchmark():
    assert len(get_task("xnli").splits["test"]) == 15
    # XTREME's lists, plus XTREME-R's additions (marked in xtreme.py; udpos': local files only).
    from stilts_ds.tasks.xtreme import XTREME_R_EXTRA

    def xtreme_only(task):
        return [l for l in get_task(task).splits["test"] if l not in XTREME_R_EXTRA.get(task, ())]

    assert len(xtreme_only("panx")) == 40 and len(get_task("panx").splits["test"]) == 48
    assert len(xtreme_only("udpos")) == 33 and len(get_task("udpos").splits["test"]) == 38
    assert len(xtreme_only("tatoeba")) == 36 and len(get_task("tatoeba").splits["test"]) == 41
    assert len(xtreme_only("xquad")) == 11
    assert get_task("xnli").splits["train"] == ("en",)


def test_unknown_task_suggests_a_name():
    with pytest.raises(StiltsError, match="Did you mean 'xnli'"):
        get_task("xnl")


def test_missing_split_or_language_is_an_error():
    with pytest.raises(StiltsError, match="has no split 'train'.*validation, test"):
        load_examples(get_task("bucc"), "train", "de")
    with pytest.raises(StiltsError, match="has no language 'xx'"):
        load_examples(get_task("xnli"), "test", "xx")
    with pytest.raises(StiltsError, match="pick one with --lang"):
        load_examples(get_task("xnli"), "test")
    with pytest.raises(StiltsError, match="train.*has no language 'de'"):
        load_examples(get_task("pawsx"), "train", "de")


def test_ccg_without_files_says_what_to_supply(tmp_path):
    with pytest.raises(StiltsError, match="CCGbank is licensed.*tags.txt"):
        load_examples(get_task("ccg"), "train", source="local", data_dir=tmp_path)
    with pytest.raises(StiltsError, match="no hub source"):
        load_examples(get_task("ccg"), "train", source="hub")
