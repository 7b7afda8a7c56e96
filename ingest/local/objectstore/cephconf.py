"""The cluster's ceph.conf: one monitor, one OSD and one gateway on 127.0.0.1, files under one folder.

Rewritten on every start (ports and the OSD's size may change between starts). The settings make
a one-node cluster behave: pools of one replica, no authentication between daemons, pid files
and admin sockets under the store's folder, and garbage collection within a minute so that
deleted data frees the sparse block file's space in a test's lifetime.
"""
from __future__ import annotations

from pathlib import Path

GC_WAIT_SECONDS = 60  # deleted and aborted-multipart data is reclaimed within ~2 minutes

_CONF_TEMPLATE = """\
# Written by ingest/local/objectstore/cephconf.py on every start: edits are lost.
[global]
fsid = {fsid}
mon host = v1:127.0.0.1:{mon_port}
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv4 = true
ms bind ipv6 = false
ms bind msgr2 = false
auth cluster required = none
auth service required = none
auth client required = none
run dir = {data}/run
pid file = {data}/run/$name.pid
admin socket = {data}/run/$name.asok
log file = {data}/log/$name.log
mon cluster log file = {data}/log/cluster.log
keyring = {data}/keyring
erasure code dir = {lib}/ceph/erasure-code
plugin dir = {lib}/ceph
osd class dir = {lib}/rados-classes
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon max pg per osd = 1000
# One monitor: commit map changes at once instead of batching them for a second (pool creation).
paxos propose interval = 0.05
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim allowed = false
# The monitor warns below this free disk (default 30 %); it stops below mon data avail crit (5 %).
mon data avail warn = 10
osd crush chooseleaf type = 0
debug ms = 0

[mon]
mon data = {data}/mon

[osd]
osd data = {data}/osd
osd crush update on start = false
osd class update on start = false
osd objectstore = bluestore
bluestore block create = true
bluestore block size = {block_size}
bluestore fsck on mount = false
bluestore fsck on mkfs = false
osd memory target = 939524096
bluestore cache autotune = false
bluestore cache size = 134217728

[client]
admin socket =
log file = {data}/log/$name.log

[client.rgw.a]
admin socket = {data}/run/$name.asok
rgw frontends = beast endpoint=127.0.0.1:{port}
rgw thread pool size = 64
rgw gc obj min wait = {gc_wait}
rgw gc processor period = {gc_wait}
rgw gc processor max time = {gc_wait}
rgw enable usage log = false
"""


def render(*, fsid: str, mon_port: int, port: int, data: Path, lib: Path, block_size: int) -> str:
    """ceph.conf for a cluster whose files live under `data`, its libraries under `lib`."""
    return _CONF_TEMPLATE.format(fsid=fsid, mon_port=mon_port, port=port, data=data, lib=lib,
                                 block_size=block_size, gc_wait=GC_WAIT_SECONDS)
