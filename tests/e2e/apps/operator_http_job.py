"""An application for the operator pod variants: HTTP GETs with urllib (and requests when the app has it).

Prints, as JSON on stdout, which requests/pydantic it imported (version and file), so a test can tell the
application's own copies from the image's.
"""

from __future__ import annotations

import json
import sys
import urllib.request

url = sys.argv[1]
out: dict[str, list[str]] = {}
with urllib.request.urlopen(url + "/urllib", timeout=10) as response:
    response.read()
try:
    import requests
except ImportError:
    pass
else:
    requests.get(url + "/requests", timeout=10).raise_for_status()
    out["requests"] = [requests.__version__, requests.__file__]
try:
    import pydantic
except ImportError:
    pass
else:
    out["pydantic"] = [str(pydantic.VERSION), pydantic.__file__]
print(json.dumps(out))
