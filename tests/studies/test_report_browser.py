"""The report's index.html in a real browser: headless Chromium loads the page and a probe
script records, into the DOM, each <img>'s naturalWidth (0: the image did not decode) and
whether the answers section is there; ``--dump-dom`` prints the DOM after the load event.

    pytest tests/studies/test_report_browser.py -q

Needs Debian's ``chromium`` (``apt-get install -y chromium``; .ci/run installs it, as it does
openssh-server). Without it the test skips, saying why, except under CI (the environment
variable CI set to a true value, as .ci/run and CI services set it): there it fails, so a CI
machine that lost its browser cannot pass green.

The page is the report as written except for two edits to a copy: the probe script before
</body>, and ``script-src 'unsafe-inline'`` added to its Content-Security-Policy so that the
probe may run. ``img-src`` stays as the report wrote it, so an image the policy blocked would
read naturalWidth 0 here. A deliberately broken image in the same copy must read 0: the probe
can fail. About 1-2 s (Chromium's start).
"""
import json
import os
import re
import shutil
import subprocess

import pytest

from stilts_ds.studies.report import build_report
from stilts_ds.studies.results import write_results

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser")) if p), None)

PROBE = """<img src="data:image/png;base64,AAAA" data-file="broken-control" alt="">
<script>
window.addEventListener("load", () => {
  const imgs = [...document.images].map(i => ({file: i.dataset.file, width: i.naturalWidth, complete: i.complete}));
  const answers = document.querySelector("section#answers");
  document.body.setAttribute("data-probe", JSON.stringify({imgs, answers: answers ? answers.innerText : null}));
});
</script>
"""


def _in_ci() -> bool:
    """CI=true (or 1, yes, ...): any value but empty, 0, false, no, off."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no", "off")


def _need_chromium():
    if CHROMIUM is None:
        message = "no chromium on PATH: apt-get install -y chromium (Debian) to render index.html in a real browser"
        if _in_ci():
            pytest.fail(f"{message}\nCI is set ({os.environ.get('CI')!r}): a CI machine must run this test; "
                        ".ci/run installs chromium when run as root")
        pytest.skip(message)


def _inputs(tmp_path):
    results = {}
    for name, xnli, phase1 in (("english", 80.0, 10.0), ("multilingual", 81.0, 16.0)):
        arm = tmp_path / "arms" / name
        for stage, wall in (("phase1", phase1), ("phase2/xnli", 20.0)):
            (arm / stage).mkdir(parents=True)
            (arm / stage / "DONE.json").write_text(json.dumps({"wall_seconds": wall, "world_size": 2}))
        out = write_results(arm / "results.json",
                            {"xnli": {"en": {"accuracy": xnli}}, "pawsx": {"en": {"accuracy": 70.0}}})
        out["uncertainty"] = {"method": "paired bootstrap", "resamples": 1000, "seed": 0, "level": 0.95,
                              "xtreme_average": {"low": out["xtreme_average"] - 1, "high": out["xtreme_average"] + 1},
                              "task_scores": {"xnli": {"low": xnli - 1, "high": xnli + 1}}}
        (arm / "results.json").write_text(json.dumps(out))
        results[name] = arm / "results.json"
    rows = [{"engine": e, "dtype": "fp16", "batch_size": b, "throughput_samples_per_s": thr * r,
             "latency_ms_p50": 2.0 * r if b == 1 else None, "node_id": "cluster", "status": "ok", "task": "xnli",
             "lang": "en"} for e, thr in (("ds", 1000.0), ("torch-sdpa", 900.0)) for b in (1, 8) for r in (0.98, 1.02)]
    bench = tmp_path / "bench" / "bench.jsonl"
    bench.parent.mkdir()
    bench.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (bench.parent / "DONE.json").write_text(json.dumps({"config": {"served": "english/phase2/xnli"}}))
    info = {n: {"arm": n, "data": d, "description": None, "intermediate_tasks": ["mnli"], "task_scores": {},
                "averages": {}, "phase1_samples_per_s": None, "phase1_wall_s": None, "phase2_wall_s": None}
            for n, d in (("english", "English-only"), ("multilingual", "multilingual +MLM"))}
    return results, [bench], info


def _per_arm_bench(tmp_path):
    """The study's bench nodes' rows: per arm, task and language, each engine's score through it."""
    out = []
    for arm, score in (("english", 80.0), ("multilingual", 81.0)):
        rows = [{"engine": e, "dtype": d, "batch_size": b, "throughput_samples_per_s": thr * (1.7 if d == "fp16" else 1),
                 "latency_ms_p50": 2.0, "node_id": "cluster", "status": "ok", "task": "xnli", "lang": lang,
                 "arm": arm, "serving_batch_size": 8, "tokens_per_example": 20.0, "metric": "accuracy",
                 "accuracy": score - (0.2 if d == "fp16" else 0.0)}
                for e, thr in (("ds", 1000.0), ("torch-sdpa", 900.0)) for d in ("fp32", "fp16") for b in (1, 8)
                for lang in ("en", "hi")]
        path = tmp_path / "bench" / arm / "xnli" / "bench.jsonl"
        path.parent.mkdir(parents=True)
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        out.append(path)
    return out


@pytest.mark.parametrize("per_arm", [False, True], ids=["one-checkpoint", "per-arm-with-scores"])
def test_every_plot_loads_and_the_answers_are_there(tmp_path, per_arm):
    _need_chromium()
    results, benches, info = _inputs(tmp_path)
    if per_arm:
        benches = _per_arm_bench(tmp_path)
    paths = build_report(results, benches, tmp_path / "report", arm_info=info)
    page = paths["html"].read_text(encoding="utf-8")
    pngs = sorted(p.name for p in (tmp_path / "report").glob("*.png"))
    assert "default-src 'none';" in page and "</body>" in page
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';", 1)
                     .replace("</body>", PROBE + "</body>", 1), encoding="utf-8")
    run = subprocess.run([CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
                          f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom",
                          probe.as_uri()], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    found = re.search(r'data-probe="([^"]*)"', run.stdout)
    assert found, f"the probe did not run (no data-probe in the DOM):\n{run.stdout[:2000]}\n{run.stderr[-2000:]}"
    import html

    seen = json.loads(html.unescape(found.group(1)))
    widths = {i["file"]: i["width"] for i in seen["imgs"]}
    assert widths.pop("broken-control") == 0  # the probe tells a broken image from a loaded one
    assert sorted(widths) == pngs and len(pngs) >= 5
    assert all(w > 0 for w in widths.values()), f"images that did not load: {widths}"
    answers = seen["answers"] or ""
    assert "RQ1 (inference efficiency)" in answers and "RQ2 (accuracy vs cost, XTREME)" in answers
    if per_arm:  # accuracy through each engine against its serving cost: engines.png loaded above
        assert "engines.png" in widths and "RQ2 through the engines" in answers
        assert "the largest change from fp32 to fp16 on the same engine is -0.20 points" in answers
    else:
        assert "one checkpoint was served (english/phase2/xnli)" in answers
