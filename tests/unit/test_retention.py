"""delete and prune: what they remove, and that no remaining chain breaks unsaid."""
import json

import pytest

import storegen as g
from conftest import DEVICE_SIZE, run, sha


def store(world, per_device=3, devices=("a", "b")):
    """Sessions of two devices, interleaved in time; the a-chain is restorable."""
    made = {d: [] for d in devices}
    images = {d: world.tmp / ("%s.img" % d) for d in devices}
    for d in devices:
        images[d].write_bytes(world.pre)
    day = 0
    for i in range(per_device):
        for d in devices:
            day += 1
            s = g.Session(world.store, "%s_%02d" % (d, day), DEVICE_SIZE, str(images[d]),
                          start="2024-05-%02dT10:00:00.000000000Z" % day,
                          uuid=bytes([day] * 16))
            cur = bytearray(images[d].read_bytes())
            for n in (i, i + 10):
                lo, hi = n * g.BS, (n + 1) * g.BS
                s.add(g.record(n, bytes(cur[lo:hi])))
                cur[lo:hi] = b"%s%d" % (d.encode(), i) * (g.BS // 2)
            images[d].write_bytes(cur)
            s.write()
            made[d].append(s)
    return made, images


def names(world):
    return sorted(p.name for p in world.store.iterdir())


def test_prune_keep_removes_oldest_per_device(world):
    made, _ = store(world)
    res = run("prune", "--store", world.store, "--keep", "2")
    assert res.returncode == 0, res.stderr
    assert names(world) == ["a_03", "a_05", "b_04", "b_06"]
    assert res.stdout.splitlines()[-1].startswith("removed 2 of 6 sessions")
    # What remains still restores: the chains were cut at their old end.
    assert run("restore", made["a"][1].dir, "--dry-run").returncode == 0


def test_prune_dry_run_removes_nothing(world):
    store(world)
    res = run("prune", "--store", world.store, "--keep", "1", "--dry-run", "-J")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)["prune"]
    assert [r["session"] for r in out] == ["a_01", "b_02", "a_03", "b_04"]
    assert {r["result"] for r in out} == {"would-remove"}
    assert len(names(world)) == 6


def test_prune_max_size_oldest_first_across_devices(world):
    made, _ = store(world)
    sizes = {s.dir.name: len(s.blocks_bytes()) + len((s.dir / "meta").read_bytes())
             for d in made.values() for s in d}
    total = sum(sizes.values())
    keep_bytes = total - sizes["a_01"] - sizes["b_02"]     # two must go, a third not
    res = run("prune", "--store", world.store, "--max-size", str(keep_bytes))
    assert res.returncode == 0, res.stderr
    assert names(world) == ["a_03", "a_05", "b_04", "b_06"]


def test_prune_never_removes_a_live_session_and_says_when_over(world, monkeypatch):
    """Without the module nothing is live: an open session left by a crash can go."""
    made, _ = store(world, per_device=1, devices=("a",))
    s = made["a"][0]
    s.end_state = "open"
    s.write()
    res = run("prune", "--store", world.store, "--max-size", "1")
    assert res.returncode == 0, res.stderr
    assert names(world) == []


def test_prune_policy_from_the_configuration(world, tmp_path):
    store(world)
    conf = tmp_path / "bdsnap.conf"
    conf.write_text("# retention\nkeep=1 max_size=20G\n/dev/sdz ordered=yes\n")
    conf.chmod(0o644)
    res = run("prune", "--store", world.store, "--config", conf)
    assert res.returncode == 0, res.stderr
    assert names(world) == ["a_05", "b_06"]


@pytest.mark.parametrize("text,why", [("keep=x\n", "not a number"), ("keep=5K\n", "not a number"),
                                      ("max_size=lots\n", "not a size"),
                                      ("keep=1\nkeep=2\n", "setting given twice"),
                                      ("colour=blue\n", "unknown setting")])
def test_bad_retention_settings(world, tmp_path, text, why):
    conf = tmp_path / "bdsnap.conf"
    conf.write_text(text)
    conf.chmod(0o600)
    res = run("prune", "--store", world.store, "--config", conf)
    assert res.returncode == 6 and why in res.stderr, res.stderr
    assert res.stderr.startswith("bdsnap: %s:" % conf)


def test_prune_without_policy_is_a_usage_error(world, tmp_path):
    conf = tmp_path / "bdsnap.conf"
    conf.write_text("/dev/sdz\n")
    conf.chmod(0o600)
    res = run("prune", "--store", world.store, "--config", conf)
    assert res.returncode == 2 and "no policy" in res.stderr


def test_delete_oldest_is_allowed(world):
    made, _ = store(world)
    res = run("delete", made["a"][0].dir, made["b"][0].dir.name, "--store", world.store)
    assert res.returncode == 0, res.stderr
    assert names(world) == ["a_03", "a_05", "b_04", "b_06"]
    assert res.stdout.startswith("removed a_01 (")


def test_delete_needed_session_refused_without_force(world):
    made, images = store(world)
    res = run("delete", made["a"][1].dir)
    assert res.returncode == 4
    assert "%s: refused: older sessions of its device need it to be restored: a_01" \
        % made["a"][1].dir in res.stderr
    assert len(names(world)) == 6
    # Deleting the older ones too is fine: nothing remaining needs them.
    assert run("delete", made["a"][1].dir, made["a"][0].dir).returncode == 0
    assert names(world) == ["a_05", "b_02", "b_04", "b_06"]


def test_delete_force_marks_the_broken_chain(world):
    made, images = store(world)
    res = run("delete", made["a"][2].dir, "--force")
    assert res.returncode == 0, res.stderr
    assert "older sessions of its device can no longer be restored: a_01, a_03" in res.stderr
    assert "now unrestorable: a_01, a_03" in res.stdout
    for s in made["a"][:2]:
        assert "chain_broken=a_05\n" in (s.dir / "meta").read_text()
        before = sha(images["a"])
        res = run("restore", s.dir)
        assert res.returncode == 4 and "a later session of this device was deleted" in res.stderr
        assert sha(images["a"]) == before
        info = json.loads(run("show", s.dir, "-J").stdout)["sessions"][0]
        assert info["restorable"] is False


def test_delete_dry_run_and_missing(world):
    made, _ = store(world)
    res = run("delete", made["a"][0].dir, "--dry-run")
    assert res.returncode == 0 and res.stdout.startswith("would remove a_01")
    assert len(names(world)) == 6
    res = run("delete", world.store / "nope")
    assert res.returncode == 1 and "no such session" in res.stderr
