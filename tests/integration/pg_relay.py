"""A TCP relay in front of the scratch PostgreSQL, for outages the shared server cannot suffer.

The scratch cluster (tests/scripts/pg_scratch.sh) listens on a Unix socket and serves every
suite of the run, so it is never paused or stopped. An epcsd given `relay.uri(schema)` reaches
it through this relay instead, which can hold every byte (`pause`: a database that stops
answering, as a paused or partitioned one does), drop every connection and refuse new ones
(`cut`: a restart or a crash), and pass traffic again (`resume`).
"""

import os
import select
import socket
import threading
import urllib.parse


class Relay:
    def __init__(self, base_uri):
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(base_uri).query)
        self.socket_path = os.path.join(query["host"][0], ".s.PGSQL.%s" % query.get(
            "port", ["5432"])[0])
        self.user = query.get("user", ["epcs"])[0]
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.flowing = threading.Event()
        self.flowing.set()
        self.refusing = False
        self.pairs = []
        self.stopped = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def uri(self, schema):
        return ("postgresql://%s@127.0.0.1:%d/epcs?options=-csearch_path%%3D%s"
                % (self.user, self.port, schema))

    def _accept(self):
        while not self.stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.refusing:
                client.close()
                continue
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                server.connect(self.socket_path)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.pairs.append((client, server))
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client, server):
        peers = {client: server, server: client}
        try:
            while not self.stopped:
                ready, _, _ = select.select(list(peers), [], [], 0.05)
                for source in ready:
                    # While paused, bytes stay in the kernel's buffers: nothing answers.
                    self.flowing.wait()
                    data = source.recv(65536)
                    if not data:
                        return
                    peers[source].sendall(data)
        except OSError:
            return
        finally:
            for end in (client, server):
                try:
                    end.close()
                except OSError:
                    pass

    def pause(self):
        self.flowing.clear()

    def resume(self):
        self.refusing = False
        self.flowing.set()

    def cut(self):
        """Closes every relayed connection and refuses new ones until resume()."""
        self.refusing = True
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for end in pair:
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self.flowing.set()

    def stop(self):
        self.stopped = True
        self.flowing.set()
        self.cut()
        self.listener.close()
