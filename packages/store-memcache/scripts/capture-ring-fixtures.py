#!/usr/bin/python3
"""Captures where libmemcached's ketama puts keys, for ring.test.ts (ring.fixtures.json).

Starts memcached servers, stores keys through pylibmc (libmemcached) with the weighted ketama
distribution, then asks each server which keys it holds. Needs memcached and python3-pylibmc
(Debian: apt-get install memcached python3-pylibmc). Run from the package folder:

    /usr/bin/python3 scripts/capture-ring-fixtures.py > src/ring.fixtures.json
"""

import base64
import hashlib
import json
import subprocess
import time

import pylibmc

# Key bases the way the store writes them: prefix, a url-safe base64 sha1, a colon.
KEYS = [
    "sl:" + base64.urlsafe_b64encode(hashlib.sha1(str(i).encode()).digest()).decode().rstrip("=") + ":"
    for i in range(600)
]

POOLS = {
    "three": ["127.0.0.1:21101", "127.0.0.1:21102", "127.0.0.1:21103"],
    "four": ["127.0.0.1:21101", "127.0.0.1:21102", "127.0.0.1:21103", "127.0.0.1:21104"],
    "seven": ["127.0.0.1:%d" % port for port in range(21101, 21108)],
    # libmemcached leaves the default port out of the names it hashes.
    "default-port": ["127.0.0.1:11211", "127.0.0.1:21102", "127.0.0.1:21103"],
    "hostnames": ["localhost:21101", "localhost:21102", "localhost:21103"],
    # ...and hashes IPv6 hosts without their brackets.
    "ipv6": ["[::1]:21101", "[::1]:21102", "[::1]:21103"],
    "ipv6-default-port": ["[::1]:11211", "[::1]:21102", "[::1]:21103"],
}


def capture(servers):
    ports = sorted({int(server.rsplit(":", 1)[1]) for server in servers})
    processes = [
        subprocess.Popen(
            ["memcached", "-u", "nobody", "-U", "0", "-l", "127.0.0.1,::1", "-p", str(port)]
        )
        for port in ports
    ]
    try:
        time.sleep(0.5)
        pool = pylibmc.Client(servers, binary=True, behaviors={"ketama_weighted": True})
        for key in KEYS:
            pool.set(key, "1")
        placement = {}
        for server in servers:
            single = pylibmc.Client([server], binary=True)
            for key, value in single.get_multi(KEYS).items():
                placement[key] = server
        assert len(placement) == len(KEYS), "every key is on one server"
        # The index, in `servers`, of the server holding each key of KEYS, in order.
        return [servers.index(placement[key]) for key in KEYS]
    finally:
        for process in processes:
            process.terminate()
            process.wait()


print(
    json.dumps(
        {
            "source": "pylibmc %s, libmemcached %s, behaviors ketama_weighted"
            % (pylibmc.__version__, pylibmc.libmemcached_version),
            "keys": "sl: + base64url(sha1(String(i))) + : for i from 0 to %d" % (len(KEYS) - 1),
            "pools": {
                name: {"servers": servers, "placement": capture(servers)}
                for name, servers in POOLS.items()
            },
        },
        separators=(",", ":"),
    )
)
