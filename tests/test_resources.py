"""Peak memory of `dedup run` on adversarial inputs, read from the OS (ru_maxrss of the child).

Each run happens in a fresh wrapper process, so RUSAGE_CHILDREN holds that run alone. The bounds
come from the design: memory is the baseline of the loaded libraries plus the number of units
times a small constant, plus the text of the batch being read (one record can be a batch on its
own, so a huge record costs a few bytes per character: its str, its UTF-8 bytes and the code
points of pass 2), and the issue's ceiling of 1.5 GB for a 200 MB corpus. No time is measured.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MB = 1 << 20
CEILING = 1536 * MB  # issue 3: peak memory under 1.5 GB for the 200 MB corpus
MEASURE = """
import resource, subprocess, sys
subprocess.run([sys.executable, "-m", "dedup", "run", *sys.argv[1:], "--quiet"], check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)  # kB on Linux
"""


def peak_rss(*args) -> int:
    """Peak resident bytes of one `dedup run` process."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, "-c", MEASURE, *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    folder = tmp_path_factory.mktemp("baseline")
    (folder / "one.jsonl").write_bytes(b'{"text": "one small record"}\n')
    return peak_rss(folder / "one.jsonl", "-o", folder / "out")


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in kB on Linux only")
def test_many_identical_records_stay_within_units_times_a_constant(tmp_path, baseline):
    n = 200_000
    path = tmp_path / "same.jsonl"
    path.write_bytes(b'{"text": "the same short record, again and again"}\n' * n)
    peak = peak_rss(path, "-o", tmp_path / "out")
    # 1 KB per unit (sketch ~160 B, ids, report rows in slices of 65,536) + 100 MB of batches
    bound = baseline + n * 1024 + 100 * MB
    print(f"200k identical records: peak {peak / MB:.0f} MB, baseline {baseline / MB:.0f} MB, "
          f"bound {bound / MB:.0f} MB")
    assert peak <= min(bound, CEILING)


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in kB on Linux only")
def test_one_50_mb_record_stays_within_a_few_bytes_per_character(tmp_path, baseline):
    n_chars = 50_000_000
    text = ("word%d and more words here " * (n_chars // 20))[:n_chars]
    path = tmp_path / "big.jsonl"
    path.write_bytes(json.dumps({"text": text}).encode() + b"\n")
    del text
    peak = peak_rss(path, "-o", tmp_path / "out")
    bound = baseline + 16 * n_chars  # str, raw line, UTF-8 copy, uint32 code points, arrays
    print(f"one 50 MB record: peak {peak / MB:.0f} MB, baseline {baseline / MB:.0f} MB, "
          f"bound {bound / MB:.0f} MB")
    assert peak <= min(bound, CEILING)
