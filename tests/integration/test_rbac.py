import json
import httpx
import pytest
pytestmark = pytest.mark.stack
def test_dump(stack):
    usage = httpx.get(f"{stack.kube_url}/_emulator/requests").json()["usage"]
    open("/tmp/usage.json", "w").write(json.dumps(usage, indent=1))
