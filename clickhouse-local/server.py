#!/usr/bin/env python3
"""A local ClickHouse HTTP server over the real ClickHouse engine (chdb).

No ClickHouse server package is installable on our machines (Debian's is from 2018), but
the engine itself ships as the Python package chdb. This process serves the part of
ClickHouse's HTTP interface that the Rust `clickhouse` crate and curl use:

  * GET /ping and GET / -> "Ok."
  * the query in the URL (`query=`), in the body, or both (URL part first, as ClickHouse does)
  * `multipart/form-data` bodies with `query` and `param_*` fields
  * `database`, `default_format`, server-side `{name:Type}` parameters (`param_name=`),
    and any other URL parameter as a query setting
  * `INSERT ... FORMAT <fmt>` with the data in the body (chunked or not)
  * ClickHouse's error text, `X-ClickHouse-Exception-Code`, and `X-ClickHouse-Summary`
    (result_rows / elapsed_ns; chdb does not report rows read per query, system.events does)

Usage: server.py [--host 127.0.0.1] [--port 0] [--data DIR] [--port-file FILE]
With --port 0 it picks a free port; the chosen URL is printed on stdout and, with
--port-file, written to that file once the server accepts connections.
"""
import argparse
import email.parser
import email.policy
import json
import os
import re
import socket
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import chdb

# URL parameters that belong to the HTTP interface, not to query settings.
HTTP_ONLY = {
    "query", "database", "default_format", "user", "password", "quota_key", "query_id",
    "session_id", "session_timeout", "session_check", "compress", "decompress",
    "enable_http_compression", "wait_end_of_query", "buffer_size", "http_response_buffer_size",
    "send_progress_in_http_headers", "http_headers_progress_interval_ms", "add_http_cors_header",
}
INSERT_FORMAT = re.compile(rb"^\s*INSERT\s.*?\bFORMAT\s+([A-Za-z0-9_]+)", re.IGNORECASE | re.DOTALL)
ERROR_CODE = re.compile(r"Code:\s*(\d+)")
# ClickHouse answers some errors with 4xx; everything else is a 500.
STATUS_BY_CODE = {62: 400, 27: 400, 36: 400, 41: 400, 47: 404, 60: 404, 81: 404, 115: 400,
                  456: 400, 457: 400, 516: 401}
CONTENT_TYPES = {"JSON": "application/json", "JSONEachRow": "application/x-ndjson",
                 "JSONCompact": "application/json", "CSV": "text/csv", "CSVWithNames": "text/csv"}


class ClickHouseError(Exception):
    def __init__(self, text, status=None):
        super().__init__(text)
        m = ERROR_CODE.search(text)
        self.code = int(m.group(1)) if m else 1002
        self.status = status or STATUS_BY_CODE.get(self.code, 500)
        self.text = text if text.startswith("Code:") else f"Code: {self.code}. DB::Exception: {text}"


def sql_literal(value):
    if re.fullmatch(r"-?\d+(\.\d+)?", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Engine:
    """One chdb engine bound to one data directory; a fresh connection per request keeps
    `USE` and `SET` from leaking between requests (a connection costs ~0.4 ms)."""

    def __init__(self, path):
        self.path = path
        self.anchor = chdb.connect(f"file:{path}")  # keeps the engine open
        self.spool = tempfile.mkdtemp(prefix="chlocal-insert-")

    def run(self, sql, fmt, database, params, settings, insert_data=None):
        conn = chdb.connect(f"file:{self.path}")
        tmp = None
        try:
            if database:
                conn.query(f"USE `{database}`")
            for key, value in settings.items():
                if not re.fullmatch(r"[A-Za-z0-9_]+", key):
                    raise ClickHouseError(f"Code: 115. DB::Exception: Unknown setting {key}. (UNKNOWN_SETTING)")
                conn.query(f"SET {key} = {sql_literal(value)}")
            if insert_data is not None:
                if not insert_data:
                    return b"", {"result_rows": 0, "written_rows": 0}
                tmp = os.path.join(self.spool, uuid.uuid4().hex)
                with open(tmp, "wb") as f:
                    f.write(insert_data)
                m = re.search(r"\bFORMAT\s+[A-Za-z0-9_]+\s*$", sql, re.IGNORECASE)
                sql = sql[: m.start()] + f"FROM INFILE '{tmp}' " + sql[m.start():]
            res = conn.query(sql, fmt, params=params) if params else conn.query(sql, fmt)
            out = res.bytes() if res is not None else b""
            # chdb reports the rows of the *result* here, not the rows read; rows read are in
            # system.events (SelectedRows), as deltas (see bench/confirmation.sh).
            summary = {
                "result_rows": res.rows_read() if res is not None else 0,
                "result_bytes": res.bytes_read() if res is not None else 0,
                "elapsed_ns": int((res.elapsed() if res is not None else 0) * 1e9),
            }
            return out or b"", summary
        except ClickHouseError:
            raise
        except Exception as e:  # chdb raises ChdbError / RuntimeError with ClickHouse's text
            raise ClickHouseError(str(e).strip()) from None
        finally:
            if tmp:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
            conn.close()


# Largest request body accepted (an INSERT batch); larger ones get 413 unread.
MAX_BODY_BYTES = 256 * 1024 * 1024


class BodyTooLarge(Exception):
    pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "clickhouse-local-chdb/1"
    engine: Engine = None
    log_queries = False
    # Socket timeout: a client that stops sending (or an idle keep-alive connection) is
    # dropped after this long instead of holding a thread forever.
    timeout = 300

    def setup(self):
        super().setup()
        # The status line and headers go out in one write and the body in another: with
        # Nagle's algorithm on, the body waited for the client's delayed ACK (~40 ms) on
        # every answer over a reused connection.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt, *args):  # quiet by default; errors are still answered
        if self.log_queries:
            sys.stderr.write("chlocal: " + (fmt % args) + "\n")

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts, total = [], 0
            while True:
                size_line = self.rfile.readline(1024)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                total += size
                if total > MAX_BODY_BYTES:
                    raise BodyTooLarge()
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise BodyTooLarge()
        return self.rfile.read(length) if length else b""

    def answer(self, status, body, headers=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.handle_query(b"")

    def do_POST(self):
        try:
            body = self.read_body()
        except (BodyTooLarge, ValueError):
            # The rest of the body is unread: answer and close the connection.
            self.close_connection = True
            return self.answer(413, b"request body too large or malformed\n", {"Connection": "close"})
        self.handle_query(body)

    def handle_query(self, body):
        url = urlsplit(self.path)
        if url.path.rstrip("/") == "/ping":
            return self.answer(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
        args = dict(parse_qsl(url.query, keep_blank_values=True))
        ctype = self.headers.get("Content-Type", "")
        if ctype.startswith("multipart/form-data"):
            msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body)
            for part in msg.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if name:
                    args[name] = part.get_payload(decode=True).decode("utf-8")
            body = b""
        query = args.get("query", "")
        if not query and not body:
            return self.answer(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
        params = {k[6:]: v for k, v in args.items() if k.startswith("param_")}
        settings = {k: v for k, v in args.items() if k not in HTTP_ONLY and not k.startswith("param_")}
        fmt = args.get("default_format") or "TabSeparated"
        insert_data = None
        qbytes = query.encode()
        if qbytes and INSERT_FORMAT.match(qbytes):
            insert_data, sql = body, query          # header in the URL, rows in the body
        else:
            full = (qbytes + b"\n" + body) if (qbytes and body) else (qbytes or body)
            m = INSERT_FORMAT.match(full)
            if m and m.group(1).upper() != "VALUES":
                head, _, data = full[m.end():].partition(b"\n")
                sql, insert_data = (full[: m.end()] + head).decode(), data
            else:
                sql = full.decode("utf-8")
        qid = self.headers.get("X-ClickHouse-Query-Id") or args.get("query_id") or str(uuid.uuid4())
        started = time.perf_counter_ns()
        try:
            out, summary = self.engine.run(sql, fmt, args.get("database"), params, settings, insert_data)
        except ClickHouseError as e:
            if self.log_queries:
                sys.stderr.write(f"chlocal: error {e.code}: {e.text[:300]}\n")
            return self.answer(e.status, (e.text + "\n").encode(), {
                "Content-Type": "text/plain; charset=UTF-8",
                "X-ClickHouse-Exception-Code": str(e.code),
                "X-ClickHouse-Query-Id": qid,
            })
        summary.setdefault("elapsed_ns", time.perf_counter_ns() - started)
        summary = {k: str(v) for k, v in summary.items()}
        self.answer(200, out, {
            "Content-Type": CONTENT_TYPES.get(fmt, "text/plain; charset=UTF-8"),
            "X-ClickHouse-Format": fmt,
            "X-ClickHouse-Query-Id": qid,
            "X-ClickHouse-Summary": json.dumps(summary, separators=(",", ":")),
        })


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--data", help="data directory (default: a new temporary directory)")
    ap.add_argument("--port-file", help="write the chosen port here once listening")
    ap.add_argument("--log-queries", action="store_true")
    a = ap.parse_args()
    data = a.data or tempfile.mkdtemp(prefix="chlocal-data-")
    os.makedirs(data, exist_ok=True)
    Handler.engine = Engine(data)
    Handler.log_queries = a.log_queries
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 128
    srv = ThreadingHTTPServer((a.host, a.port), Handler)
    port = srv.server_address[1]
    print(f"clickhouse-local: http://{a.host}:{port} (data {data}, chdb {chdb.__version__})", flush=True)
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(port))
        os.replace(tmp, a.port_file)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
