"""What the API's handlers share: settings, the job store, object storage, the id allocator, the cache,
and the replica's memory budget."""
from __future__ import annotations

import dataclasses

from ingest.api.budget import MemoryBudget
from ingest.api.state import StateCache
from ingest.config import Settings
from ingest.ids import BlockAllocator
from ingest.kube import JobStore
from ingest.storage import Storage


@dataclasses.dataclass
class Services:
    settings: Settings
    jobs: JobStore
    storage: Storage
    job_ids: BlockAllocator
    cache: StateCache
    budget: MemoryBudget
