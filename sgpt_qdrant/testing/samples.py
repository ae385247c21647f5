"""Sample documents for the chunker: Markdown with admonitions, code and a table, reST with
directives and lists, and a generated release-notes page. The chunker's tests and
benchmarks/chunk_stats.py read the same texts."""

from __future__ import annotations

import random


def changelog(n: int, seed: int = 0) -> tuple[str, list[str]]:
    """A fastapi-style release-notes page: emoji, PR links, some long multi-sentence entries."""
    rng = random.Random(seed)
    verbs = ["Add support for", "Fix", "Update translations for", "Refactor", "Document", "Deprecate"]
    things = ["`Annotated` dependencies", "zh (update-outdated)", "OpenAPI callbacks", "WebSocket close codes",
              "the tutorial on background tasks", "response model filtering", "`Depends()` caching"]
    entries, out = [], ["# Release Notes\n"]
    for i in range(n):
        if i % 12 == 0:
            out.append(f"\n## 0.{120 - i // 12}.0\n\n### Features\n")
        body = f"{rng.choice(verbs)} {rng.choice(things)}."
        if i % 5 == 3:  # a long entry: more than one chunk's worth
            body += " " + " ".join(f"This change also touches {rng.choice(things)} and explains why in detail."
                                   for _ in range(rng.randint(5, 9)))
        pr = 16000 + i
        entry = f"* ✨ {body} PR [#{pr}](https://github.com/fastapi/fastapi/pull/{pr}) by [@dev{i % 7}](https://github.com/dev{i % 7})."
        entries.append(entry)
        out.append(entry + "\n")
    return "".join(out), entries


ADMONITIONS = """\
# Dependencies

FastAPI has a very powerful but intuitive **Dependency Injection** system.

/// tip

If you are using Python 3.9 or above, use `Annotated` as shown here.

///

/// details | Why `Annotated`?

It keeps the default value free for the parameter and plays well with editors and type checkers,
and it lets you reuse the same dependency declaration in many path operations.

///

!!! warning "Careful"
    Dependencies with `yield` run their exit code after the response is sent.
    Do not raise `HTTPException` there.

---

| Parameter | Type | Meaning |
|-----------|------|---------|
| `use_cache` | bool | Reuse the value within one request |
| `scope` | str | When the exit code runs: request or function |
| `dependencies` | list | Dependencies of the dependency itself |

```python
from typing import Annotated

from fastapi import Depends, FastAPI

app = FastAPI()


async def common_parameters(q: str | None = None, skip: int = 0, limit: int = 100):
    return {"q": q, "skip": skip, "limit": limit}


@app.get("/items/")
async def read_items(commons: Annotated[dict, Depends(common_parameters)]):
    return commons


@app.get("/users/")
async def read_users(commons: Annotated[dict, Depends(common_parameters)]):
    return commons
```

That is all.
"""


RST = """\
=========
Beekeeping
=========

Hives
-----

.. note::

   A colony needs a dry, sheltered spot facing the morning sun, away from
   paths where people walk.

.. code-block:: python

   def honey_yield(frames: int) -> float:
       return frames * 2.5

Seasons
-------

- Spring: inspect every week, add a super when seven of ten frames are drawn.
- Summer: watch for swarm cells; split strong colonies before the flow ends.
- Autumn: treat for varroa, feed syrup, reduce the entrance against wasps.
- Winter: leave them alone; heft the hive to judge the stores.

#. First numbered step.
#. Second numbered step.
"""
