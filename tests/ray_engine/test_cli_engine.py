"""``fedquery sql|explain|profile --engine ray``: the command line on a real cluster, with the
answers of ``--engine local``; ``$FEDQUERY_RAY_ADDRESS`` names the cluster when no flag does."""

from __future__ import annotations

import json
import os
import subprocess
import sys

QUERY = ("SELECT d.city, count(*) AS frames FROM frames f JOIN drives d USING (drive_id) "
         "WHERE d.weather = $w GROUP BY d.city ORDER BY frames DESC, d.city")


def _fedquery(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fedquery.cli", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})})


def test_sql_and_explain_on_ray_answer_as_local(sample, ray_cluster) -> None:
    local = _fedquery("sql", str(sample), QUERY, "--param", "w=rain", "--format", "json")
    on_ray = _fedquery("sql", str(sample), QUERY, "--param", "w=rain", "--format", "json",
                       "--engine", "ray", "--ray-address", ray_cluster)
    assert local.returncode == on_ray.returncode == 0, on_ray.stderr[-2000:]
    assert on_ray.stdout == local.stdout and json.loads(local.stdout.splitlines()[0])
    by_env = _fedquery("sql", str(sample), QUERY, "--param", "w=rain", "--format", "json",
                       "--engine", "ray", env={"FEDQUERY_RAY_ADDRESS": ray_cluster})
    assert by_env.returncode == 0 and by_env.stdout == local.stdout
    explained = _fedquery("explain", str(sample), QUERY, "--param", "w=rain", "--engine", "ray",
                          "--ray-address", ray_cluster)
    assert explained.returncode == 0 and explained.stdout.startswith("engine: ray;")


def test_an_address_with_no_cluster_is_a_one_line_error(sample) -> None:
    done = _fedquery("sql", str(sample), "SELECT 1", "--engine", "ray",
                     "--ray-address", "127.0.0.1:1")
    assert done.returncode != 0
    assert "cannot join the Ray cluster at '127.0.0.1:1'" in done.stderr
    assert "Traceback" not in done.stderr
