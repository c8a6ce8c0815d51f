import subprocess
import sys

import pytest

from visionrt._optional import available, require
from visionrt.errors import MissingDependencyError


def test_require_returns_module():
    assert require("json").dumps([]) == "[]"


def test_missing_module_names_the_extra():
    with pytest.raises(MissingDependencyError, match=r"visionrt\[tensorrt\]") as info:
        require("tensorrt_that_does_not_exist", extra="tensorrt")
    assert isinstance(info.value, ImportError)
    assert not available("tensorrt_that_does_not_exist")


def test_runtime_and_cli_help_do_not_import_torch():
    code = (
        "import sys, visionrt, visionrt.runtime, visionrt.images, visionrt.bundle, visionrt.cli\n"
        "bad = [m for m in ('torch', 'torchvision', 'timm', 'visionrt.trainer', 'visionrt.exporter')"
        " if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
