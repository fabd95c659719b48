#include "conn_guard.h"

#include <h2o/http2.h>
#include <h2o/http2_internal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"

/* picohttpparser, which libh2o embeds and exports (h2o parses HTTP/1 with it) but for which
 * Debian installs no header: the guard must read a request head exactly as h2o will. */
struct phr_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};
int phr_parse_request(const char *buf, size_t len, const char **method, size_t *method_len,
                      const char **path, size_t *path_len, int *minor_version,
                      struct phr_header *headers, size_t *num_headers, size_t last_len);

/*
 * h2o announces 100 concurrent streams; a client that waits for its answers never starts more
 * than that between two loop turns, so a quota of as many keeps every honest client at full
 * speed while a connection that resets its streams to start new ones at once gets no more
 * than its share of the worker before the next connection is read.
 */
#define STREAMS_PER_TURN 100
/* Resets a connection may do at once, and how many more each second (browsers cancel a few
 * streams when a page changes; a flood cancels thousands). */
#define RESET_BURST 100
#define RESETS_PER_SECOND 100
/* Input a connection may leave waiting for its next turn before it is told to calm down. */
#define DEFERRED_INPUT_MAX (1024 * 1024)
/* Streams whose unadmitted body is still arriving, per connection: more than the 100 streams
 * h2o lets a client have open, so only a client that keeps sending bodies of streams long
 * answered runs out. */
#define DROPPED_SLOTS 256
/* Seconds between two log lines about refused connections. */
#define REFUSED_LOG_INTERVAL_MS 10000

#define FRAME_HEADER 9

enum http1_state {
    /* The next bytes start a request head. */
    HTTP1_HEAD,
    /* An admitted request's body: passed through. */
    HTTP1_BODY,
    /* Where requests start is unknown (a chunked body, or bytes h2o read before the guard):
     * waiting until h2o has consumed all input. */
    HTTP1_UNSYNCED,
    /* An unadmitted body was dropped: after the answer the connection is closed. */
    HTTP1_CLOSING,
};

struct guarded_conn {
    /* First member: the handle h2o's socket wraps, freed by cb_tcp_closed. */
    uv_tcp_t tcp;
    struct epcs_guard *guard;
    h2o_socket_t *sock;
    int closed;
    /* In guard->http1 until the connection turns out to speak HTTP/2. */
    h2o_linklist_t http1_link;
    h2o_linklist_t deferred_link;
    h2o_socket_cb inner_read;

    h2o_http2_conn_t *h2;
    ssize_t (*inner_expect)(h2o_http2_conn_t *conn, const uint8_t *src, size_t len,
                            const char **err_desc);
    uint64_t turn;
    unsigned streams_this_turn;
    double reset_tokens;
    uint64_t reset_refilled_ms;
    uint32_t dropped[DROPPED_SLOTS];
    size_t dropped_count;

    enum http1_state http1;
    /* Offsets in the byte stream h2o sees (after the guard's cuts): the end of the input, and
     * how far the guard has parsed. */
    uint64_t http1_end;
    uint64_t http1_parsed;
    uint64_t http1_body_left;
    /* HTTP1_CLOSING: where the disarmed request's head ends; h2o has answered it once it has
     * consumed the input up to there. */
    uint64_t http1_close_at;
};

struct epcs_guard {
    uv_loop_t *loop;
    h2o_context_t *ctx;
    struct epcs_guard_limits limits;
    epcs_guard_admit_fn admit;
    void *admit_ctx;
    h2o_linklist_t http1;
    h2o_linklist_t deferred;
    uv_idle_t redrive;
    uint64_t turn;
    size_t open;
    uint64_t refused_since_log;
    uint64_t refused_logged_ms;
    /* Written by the worker's thread only, read by whichever serves /metrics. */
    struct {
        _Atomic uint64_t open, refused, bodies_dropped, goaways, deferred;
    } stats;
};

static const h2o_iovec_t http2_preface = {H2O_STRLIT("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")};

static void count(_Atomic uint64_t *counter, int64_t delta)
{
    atomic_fetch_add_explicit(counter, (uint64_t)delta, memory_order_relaxed);
}

static ssize_t guard_expect(h2o_http2_conn_t *conn, const uint8_t *src, size_t len,
                            const char **err_desc);
static void guard_read(h2o_socket_t *sock, const char *err);
static void cb_redrive(uv_idle_t *idle);

/* ---- connections -------------------------------------------------------------------------- */

static void cb_tcp_closed(uv_handle_t *handle)
{
    struct guarded_conn *g = (struct guarded_conn *)handle;
    if (g->guard != NULL) {
        g->guard->open--;
        count(&g->guard->stats.open, -1);
    }
    free(g);
}

/* h2o disposes of the socket: nothing may be read from it any more (the memory stays until
 * the handle is closed). */
static void cb_sock_closing(void *data)
{
    struct guarded_conn *g = data;
    g->closed = 1;
    if (h2o_linklist_is_linked(&g->http1_link))
        h2o_linklist_unlink(&g->http1_link);
    if (h2o_linklist_is_linked(&g->deferred_link))
        h2o_linklist_unlink(&g->deferred_link);
}

/* Wraps the read callback h2o installed last, so every read passes the guard first. */
static void take_read(struct guarded_conn *g)
{
    h2o_socket_t *sock = g->sock;
    if (!g->closed && sock->_cb.read != NULL && sock->_cb.read != guard_read) {
        g->inner_read = sock->_cb.read;
        sock->_cb.read = guard_read;
    }
}

/* The connection has become HTTP/2 (prior knowledge, upgrade or ALPN): its frames pass the
 * guard from now on. */
static void take_http2(struct guarded_conn *g)
{
    h2o_linklist_t *anchor = &g->guard->ctx->http2._conns;
    for (h2o_linklist_t *node = anchor->next; node != anchor; node = node->next) {
        h2o_http2_conn_t *conn = H2O_STRUCT_FROM_MEMBER(h2o_http2_conn_t, _conns, node);
        if (conn->sock != g->sock)
            continue;
        g->h2 = conn;
        g->inner_expect = conn->_read_expect;
        conn->_read_expect = guard_expect;
        g->reset_tokens = RESET_BURST;
        g->reset_refilled_ms = uv_now(g->guard->loop);
        if (h2o_linklist_is_linked(&g->http1_link))
            h2o_linklist_unlink(&g->http1_link);
        return;
    }
}

void epcs_guard_accept(struct epcs_guard *guard, uv_stream_t *listener,
                       h2o_accept_ctx_t *accept_ctx)
{
    struct guarded_conn *g = h2o_mem_alloc(sizeof(*g));
    memset(g, 0, sizeof(*g));
    uv_tcp_init(listener->loop, &g->tcp);
    if (uv_accept(listener, (uv_stream_t *)&g->tcp) != 0) {
        uv_close((uv_handle_t *)&g->tcp, cb_tcp_closed);
        return;
    }
    if (guard->limits.max_connections > 0 && guard->open >= guard->limits.max_connections) {
        count(&guard->stats.refused, 1);
        guard->refused_since_log++;
        uint64_t now = uv_now(listener->loop);
        if (guard->refused_logged_ms == 0 ||
            now - guard->refused_logged_ms >= REFUSED_LOG_INTERVAL_MS) {
            epcs_log(EPCS_LOG_WARN, "listen",
                     "%zu connections open on this worker, its share of --max-connections: "
                     "closed %llu new one(s)",
                     guard->open, (unsigned long long)guard->refused_since_log);
            guard->refused_logged_ms = now;
            guard->refused_since_log = 0;
        }
        uv_close((uv_handle_t *)&g->tcp, cb_tcp_closed);
        return;
    }
    g->guard = guard;
    guard->open++;
    count(&guard->stats.open, 1);
    g->sock = h2o_uv_socket_create((uv_stream_t *)&g->tcp, cb_tcp_closed);
    g->sock->on_close.cb = cb_sock_closing;
    g->sock->on_close.data = g;
    h2o_linklist_insert(&guard->http1, &g->http1_link);
    h2o_accept(accept_ctx, g->sock);
    take_read(g);
}

/* ---- HTTP/1.1 ----------------------------------------------------------------------------- */

static int header_is(const struct phr_header *header, const char *name)
{
    size_t len = strlen(name);
    return header->name_len == len && strncasecmp(header->name, name, len) == 0;
}

/* A header's name is overwritten in place with one of the same length that h2o ignores. */
static void disarm_header(const struct phr_header *header)
{
    static const char content_length[] = "x-epcs-dropped";
    static const char transfer_encoding[] = "x-epcs-dropped-te";
    static const char connection[] = "x-epcs-cnx";
    const char *inert = header->name_len == sizeof(content_length) - 1 ? content_length
                        : header->name_len == sizeof(connection) - 1   ? connection
                                                                       : transfer_encoding;
    memcpy((char *)header->name, inert, header->name_len);
}

/*
 * Turns a framing header's line, in place, into `connection: close`, so h2o says so in its
 * answer and closes after it: a proxy in front then never hands the connection to its next
 * client, whose request the guard would end with the connection. The rest of the line
 * becomes the blanks before the value. Returns -1 (nothing written) for a line too short:
 * "content-length:" with an empty value.
 */
static int close_after_answer(const struct phr_header *header)
{
    static const char name[] = "connection:";
    static const char value[] = "close";
    char *line = (char *)header->name;
    size_t line_len = (size_t)(header->value + header->value_len - header->name);
    if (line_len < sizeof(name) - 1 + sizeof(value) - 1)
        return -1;
    size_t blanks = line_len - (sizeof(name) - 1) - (sizeof(value) - 1);
    memcpy(line, name, sizeof(name) - 1);
    memset(line + sizeof(name) - 1, ' ', blanks);
    memcpy(line + sizeof(name) - 1 + blanks, value, sizeof(value) - 1);
    return 0;
}

static int parse_length(const struct phr_header *header, uint64_t *length)
{
    uint64_t value = 0;
    if (header->value_len == 0 || header->value_len > 18)
        return -1;
    for (size_t i = 0; i < header->value_len; i++) {
        if (header->value[i] < '0' || header->value[i] > '9')
            return -1;
        value = value * 10 + (uint64_t)(header->value[i] - '0');
    }
    *length = value;
    return 0;
}

/*
 * Reads the request head that starts at `head` (complete: `head_len` bytes). A body is left to
 * h2o only when the request may have it buffered; otherwise its framing headers are disarmed,
 * so h2o hands the request to the router at once (which answers 401), the body bytes already
 * read are cut, and the connection ends after the answer.
 */
static void inspect_head(struct guarded_conn *g, char *head, size_t head_len,
                         const struct phr_header *headers, size_t count_headers)
{
    h2o_buffer_t *input = g->sock->input;
    const struct phr_header *length = NULL, *chunked = NULL, *authorization = NULL;
    for (size_t i = 0; i < count_headers; i++) {
        if (header_is(&headers[i], "content-length"))
            length = &headers[i];
        else if (header_is(&headers[i], "transfer-encoding"))
            chunked = &headers[i];
        else if (header_is(&headers[i], "authorization"))
            authorization = &headers[i];
    }
    uint64_t body = 0;
    int framed = length != NULL && parse_length(length, &body) == 0;
    g->http1_parsed += head_len;
    if (chunked == NULL && length == NULL)
        return;
    if (chunked == NULL && framed && body == 0)
        return;
    struct epcs_guard *guard = g->guard;
    int admitted =
        guard->admit(guard->admit_ctx, authorization != NULL ? authorization->value : NULL,
                     authorization != NULL ? authorization->value_len : 0);
    if (admitted) {
        /* Where a chunked (or malformed) body ends h2o alone works out. */
        g->http1 = chunked == NULL && framed ? HTTP1_BODY : HTTP1_UNSYNCED;
        g->http1_body_left = body;
        return;
    }
    /* A keep-alive the client asked for is dropped with the body: only the guard's own
     * `connection: close` is left for h2o to read. Every framing header goes, copies too, so
     * that h2o finds no body; the first long enough becomes that `connection: close`. */
    int told = 0;
    for (size_t i = 0; i < count_headers; i++) {
        if (header_is(&headers[i], "connection"))
            disarm_header(&headers[i]);
        else if (!header_is(&headers[i], "content-length") &&
                 !header_is(&headers[i], "transfer-encoding"))
            continue;
        else if (told || close_after_answer(&headers[i]) != 0)
            disarm_header(&headers[i]);
        else
            told = 1;
    }
    input->size = (size_t)(head + head_len - input->bytes);
    g->http1_end = g->http1_parsed;
    g->http1_close_at = g->http1_parsed;
    g->http1 = HTTP1_CLOSING;
    count(&guard->stats.bodies_dropped, 1);
}

/* Follows the requests of an HTTP/1.1 connection through its input. Returns 1 when the
 * connection is to be closed now. */
static int inspect_http1(struct guarded_conn *g)
{
    h2o_buffer_t *input = g->sock->input;
    uint64_t before = g->http1_end;
    g->http1_end += g->sock->bytes_read;
    uint64_t front = g->http1_end - input->size;
    /* h2o consumed bytes the guard never saw: it waits for the input to empty. */
    if (g->http1_parsed < front && g->http1 != HTTP1_CLOSING)
        g->http1 = HTTP1_UNSYNCED;
    if (g->http1 == HTTP1_UNSYNCED && front >= before) {
        g->http1 = HTTP1_HEAD;
        g->http1_parsed = front;
    }
    if (g->http1 == HTTP1_CLOSING && g->http1_parsed == g->http1_end)
        return front >= g->http1_close_at;
    while (g->http1_parsed < g->http1_end) {
        size_t offset = (size_t)(g->http1_parsed - front);
        size_t avail = (size_t)(g->http1_end - g->http1_parsed);
        switch (g->http1) {
        case HTTP1_CLOSING:
            /* Nothing after the disarmed request reaches h2o; once it has answered that
             * request (and those before it) the connection ends. */
            input->size = offset;
            g->http1_end = g->http1_parsed;
            return front >= g->http1_close_at;
        case HTTP1_UNSYNCED:
            return 0;
        case HTTP1_BODY: {
            uint64_t skip = avail < g->http1_body_left ? avail : g->http1_body_left;
            g->http1_parsed += skip;
            g->http1_body_left -= skip;
            if (g->http1_body_left == 0)
                g->http1 = HTTP1_HEAD;
            break;
        }
        case HTTP1_HEAD: {
            struct phr_header headers[H2O_MAX_HEADERS];
            size_t count_headers = H2O_MAX_HEADERS, method_len, path_len;
            const char *method, *path;
            int minor;
            char *head = input->bytes + offset;
            int parsed = phr_parse_request(head, avail, &method, &method_len, &path, &path_len,
                                           &minor, headers, &count_headers, 0);
            if (parsed == -2)
                return 0;
            if (parsed < 0) {
                /* Not HTTP/1 (the HTTP/2 preface, or garbage h2o answers 400). */
                g->http1 = HTTP1_UNSYNCED;
                return 0;
            }
            inspect_head(g, head, (size_t)parsed, headers, count_headers);
            if (g->http1 == HTTP1_CLOSING)
                return 0;
            break;
        }
        }
    }
    return 0;
}

/*
 * A connection that starts with the HTTP/2 preface becomes HTTP/2 inside h2o's HTTP/1 read
 * callback, which then parses everything read so far before the guard could see a frame: so
 * h2o gets the preface alone, and the rest once the guard sits in front of its frame parser.
 */
static void read_preface_first(struct guarded_conn *g)
{
    h2o_socket_t *sock = g->sock;
    size_t rest = sock->input->size - http2_preface.len;
    char *saved = h2o_mem_alloc(rest);
    memcpy(saved, sock->input->bytes + http2_preface.len, rest);
    sock->input->size = http2_preface.len;
    g->http1 = HTTP1_UNSYNCED;
    g->inner_read(sock, NULL);
    if (!g->closed) {
        take_read(g);
        if (g->h2 == NULL)
            take_http2(g);
        h2o_iovec_t room = h2o_buffer_reserve(&sock->input, rest);
        if (room.base != NULL) {
            memcpy(room.base, saved, rest);
            sock->input->size += rest;
            if (sock->_cb.read != NULL)
                sock->_cb.read(sock, NULL);
        }
    }
    free(saved);
}

static void guard_read(h2o_socket_t *sock, const char *err)
{
    struct guarded_conn *g = sock->on_close.data;
    if (err == NULL && g->h2 == NULL) {
        h2o_buffer_t *input = sock->input;
        if (g->http1 == HTTP1_HEAD && g->http1_end == g->http1_parsed &&
            input->size > http2_preface.len &&
            memcmp(input->bytes, http2_preface.base, http2_preface.len) == 0) {
            read_preface_first(g);
            return;
        }
        if (inspect_http1(g))
            err = h2o_socket_error_closed;
    }
    h2o_socket_cb inner = g->inner_read;
    inner(sock, err);
    if (g->closed)
        return;
    h2o_socket_cb now = sock->_cb.read;
    if (now != NULL && now != guard_read) {
        take_read(g);
        if (g->h2 == NULL)
            take_http2(g);
    }
}

/* ---- HTTP/2 ------------------------------------------------------------------------------- */

static uint32_t frame_stream(const uint8_t *src)
{
    return ((uint32_t)(src[5] & 0x7f) << 24) | ((uint32_t)src[6] << 16) | ((uint32_t)src[7] << 8) |
           src[8];
}

static int dropped_index(const struct guarded_conn *g, uint32_t stream)
{
    for (size_t i = 0; i < g->dropped_count; i++) {
        if (g->dropped[i] == stream)
            return (int)i;
    }
    return -1;
}

static void forget_dropped(struct guarded_conn *g, uint32_t stream)
{
    int at = dropped_index(g, stream);
    if (at >= 0)
        g->dropped[at] = g->dropped[--g->dropped_count];
}

/* Bytes of a dropped stream never reach h2o, so the guard gives the connection's window back
 * itself, as h2o would for bytes it had buffered. */
static void return_window(h2o_http2_conn_t *conn, size_t bytes)
{
    h2o_http2_window_consume_window(&conn->_input_window, bytes);
    ssize_t window = h2o_http2_window_get_window(&conn->_input_window);
    if (window * 2 < H2O_HTTP2_SETTINGS_HOST.initial_window_size) {
        int32_t delta = (int32_t)(H2O_HTTP2_SETTINGS_HOST.initial_window_size - window);
        h2o_http2_encode_window_update_frame(&conn->_write.buf, 0, delta);
        h2o_http2_conn_request_write(conn);
        h2o_http2_window_update(&conn->_input_window, delta);
    }
}

static int take_reset(struct guarded_conn *g)
{
    uint64_t now = uv_now(g->guard->loop);
    g->reset_tokens += (double)(now - g->reset_refilled_ms) * RESETS_PER_SECOND / 1000.0;
    if (g->reset_tokens > RESET_BURST)
        g->reset_tokens = RESET_BURST;
    g->reset_refilled_ms = now;
    if (g->reset_tokens < 1)
        return 0;
    g->reset_tokens -= 1;
    return 1;
}

static ssize_t calm_down(struct guarded_conn *g, const char **err_desc, const char *why)
{
    count(&g->guard->stats.goaways, 1);
    *err_desc = why;
    return H2O_HTTP2_ERROR_ENHANCE_YOUR_CALM;
}

/* The stream has had its share of this turn: its frame and what follows wait for the next. */
static ssize_t defer(struct guarded_conn *g, const char **err_desc)
{
    struct epcs_guard *guard = g->guard;
    if (g->sock->input->size > DEFERRED_INPUT_MAX)
        return calm_down(g, err_desc, "too many requests at once");
    if (!h2o_linklist_is_linked(&g->deferred_link)) {
        if (h2o_linklist_is_empty(&guard->deferred))
            uv_idle_start(&guard->redrive, cb_redrive);
        h2o_linklist_insert(&guard->deferred, &g->deferred_link);
        count(&guard->stats.deferred, 1);
    }
    return H2O_HTTP2_ERROR_INCOMPLETE;
}

static size_t buffered_bodies(h2o_http2_conn_t *conn)
{
    size_t total = 0;
    for (khiter_t it = kh_begin(conn->streams); it != kh_end(conn->streams); ++it) {
        if (!kh_exist(conn->streams, it))
            continue;
        h2o_http2_stream_t *stream = kh_val(conn->streams, it);
        if (stream->state == H2O_HTTP2_STREAM_STATE_RECV_BODY && stream->_req_body != NULL)
            total += stream->_req_body->size;
    }
    return total;
}

static int remember_dropped(struct guarded_conn *g, uint32_t stream)
{
    if (g->dropped_count == DROPPED_SLOTS)
        return -1;
    g->dropped[g->dropped_count++] = stream;
    return 0;
}

/* A DATA frame the guard handles itself; -1 when it is h2o's. */
static ssize_t guard_data(struct guarded_conn *g, h2o_http2_conn_t *conn, const uint8_t *src,
                          size_t length, const char **err_desc)
{
    uint32_t id = frame_stream(src);
    if (dropped_index(g, id) >= 0) {
        if ((src[4] & H2O_HTTP2_FRAME_FLAG_END_STREAM) != 0)
            forget_dropped(g, id);
        return_window(conn, length);
        return FRAME_HEADER + (ssize_t)length;
    }
    h2o_http2_stream_t *stream = h2o_http2_conn_get_stream(conn, id);
    if (stream == NULL || stream->state != H2O_HTTP2_STREAM_STATE_RECV_BODY ||
        buffered_bodies(conn) + length <= g->guard->limits.max_connection_body)
        return -1;
    /* Bodies in progress on this connection would pass its bound: this one is refused, and
     * the client may send it again once the others are done. */
    h2o_http2_encode_rst_stream_frame(&conn->_write.buf, id, -H2O_HTTP2_ERROR_REFUSED_STREAM);
    h2o_http2_conn_request_write(conn);
    h2o_http2_stream_reset(conn, stream);
    if ((src[4] & H2O_HTTP2_FRAME_FLAG_END_STREAM) == 0 && remember_dropped(g, id) != 0)
        return calm_down(g, err_desc, "too many request bodies refused at once");
    return_window(conn, length);
    return FRAME_HEADER + (ssize_t)length;
}

/*
 * A stream whose headers are complete waits for its body: one without a valid key is run now,
 * with an empty body (so the router answers it), by the END_STREAM h2o would have read at the
 * body's end; the body's frames are dropped as they come.
 */
static ssize_t guard_body(struct guarded_conn *g, h2o_http2_conn_t *conn, uint32_t id,
                          const char **err_desc)
{
    h2o_http2_stream_t *stream = h2o_http2_conn_get_stream(conn, id);
    if (stream == NULL || stream->state != H2O_HTTP2_STREAM_STATE_RECV_BODY)
        return 0;
    struct epcs_guard *guard = g->guard;
    ssize_t at = h2o_find_header(&stream->req.headers, H2O_TOKEN_AUTHORIZATION, -1);
    const h2o_iovec_t *value = at >= 0 ? &stream->req.headers.entries[at].value : NULL;
    if (guard->admit(guard->admit_ctx, value != NULL ? value->base : NULL,
                     value != NULL ? value->len : 0))
        return 0;
    if (remember_dropped(g, id) != 0)
        return calm_down(g, err_desc, "too many request bodies without a valid key");
    count(&guard->stats.bodies_dropped, 1);
    stream->_expected_content_length = SIZE_MAX;
    uint8_t end_stream[FRAME_HEADER] = {0,
                                        0,
                                        0,
                                        H2O_HTTP2_FRAME_TYPE_DATA,
                                        H2O_HTTP2_FRAME_FLAG_END_STREAM,
                                        (uint8_t)(id >> 24),
                                        (uint8_t)(id >> 16),
                                        (uint8_t)(id >> 8),
                                        (uint8_t)id};
    ssize_t rc = g->inner_expect(conn, end_stream, sizeof(end_stream), err_desc);
    return rc < 0 ? rc : 0;
}

static ssize_t guard_expect(h2o_http2_conn_t *conn, const uint8_t *src, size_t len,
                            const char **err_desc)
{
    struct guarded_conn *g = conn->sock->on_close.data;
    struct epcs_guard *guard = g->guard;
    uint8_t type = 0xff, flags = 0;
    uint32_t id = 0;
    if (len >= FRAME_HEADER) {
        size_t length = ((size_t)src[0] << 16) | ((size_t)src[1] << 8) | src[2];
        int whole = len - FRAME_HEADER >= length;
        type = src[3];
        flags = src[4];
        id = frame_stream(src);
        if (whole && type == H2O_HTTP2_FRAME_TYPE_DATA) {
            ssize_t handled = guard_data(g, conn, src, length, err_desc);
            if (handled != -1)
                return handled;
        } else if (whole && type == H2O_HTTP2_FRAME_TYPE_HEADERS && dropped_index(g, id) >= 0) {
            /* Trailers of a dropped body. */
            if ((flags & H2O_HTTP2_FRAME_FLAG_END_HEADERS) == 0)
                return calm_down(g, err_desc, "trailers of a refused body continue");
            if ((flags & H2O_HTTP2_FRAME_FLAG_END_STREAM) != 0)
                forget_dropped(g, id);
            return FRAME_HEADER + (ssize_t)length;
        } else if (type == H2O_HTTP2_FRAME_TYPE_HEADERS && id > conn->pull_stream_ids.max_open) {
            if (g->turn != guard->turn) {
                g->turn = guard->turn;
                g->streams_this_turn = 0;
            }
            if (g->streams_this_turn >= STREAMS_PER_TURN)
                return defer(g, err_desc);
            g->streams_this_turn++;
        } else if (whole && type == H2O_HTTP2_FRAME_TYPE_RST_STREAM) {
            if (!take_reset(g))
                return calm_down(g, err_desc, "too many streams reset");
            forget_dropped(g, id);
        }
    }
    ssize_t rc = g->inner_expect(conn, src, len, err_desc);
    if (conn->_read_expect != guard_expect) {
        g->inner_expect = conn->_read_expect;
        conn->_read_expect = guard_expect;
    }
    if (rc > 0 &&
        (type == H2O_HTTP2_FRAME_TYPE_HEADERS || type == H2O_HTTP2_FRAME_TYPE_CONTINUATION) &&
        (flags & H2O_HTTP2_FRAME_FLAG_END_HEADERS) != 0) {
        ssize_t body = guard_body(g, conn, id, err_desc);
        if (body < 0)
            return body;
    }
    return rc;
}

/* Deferred connections go on with their input, each with a fresh quota. */
static void cb_redrive(uv_idle_t *idle)
{
    struct epcs_guard *guard = idle->data;
    h2o_linklist_t waiting;
    h2o_linklist_init_anchor(&waiting);
    while (!h2o_linklist_is_empty(&guard->deferred)) {
        h2o_linklist_t *node = guard->deferred.next;
        h2o_linklist_unlink(node);
        h2o_linklist_insert(&waiting, node);
    }
    while (!h2o_linklist_is_empty(&waiting)) {
        struct guarded_conn *g =
            H2O_STRUCT_FROM_MEMBER(struct guarded_conn, deferred_link, waiting.next);
        h2o_linklist_unlink(&g->deferred_link);
        g->streams_this_turn = 0;
        g->turn = guard->turn;
        if (!g->closed && h2o_socket_is_reading(g->sock))
            g->sock->_cb.read(g->sock, NULL);
    }
    if (h2o_linklist_is_empty(&guard->deferred))
        uv_idle_stop(idle);
}

/* ---- the guard ---------------------------------------------------------------------------- */

struct epcs_guard *epcs_guard_create(uv_loop_t *loop, h2o_context_t *ctx,
                                     const struct epcs_guard_limits *limits,
                                     epcs_guard_admit_fn admit, void *admit_ctx)
{
    struct epcs_guard *guard = calloc(1, sizeof(*guard));
    if (guard == NULL)
        return NULL;
    guard->loop = loop;
    guard->ctx = ctx;
    guard->limits = *limits;
    guard->admit = admit;
    guard->admit_ctx = admit_ctx;
    h2o_linklist_init_anchor(&guard->http1);
    h2o_linklist_init_anchor(&guard->deferred);
    uv_idle_init(loop, &guard->redrive);
    guard->redrive.data = guard;
    return guard;
}

void epcs_guard_destroy(struct epcs_guard *guard)
{
    free(guard);
}

void epcs_guard_close_idle(struct epcs_guard *guard)
{
    epcs_guard_turn(guard);
    h2o_linklist_t *anchor = &guard->http1;
    for (h2o_linklist_t *node = anchor->next, *next; node != anchor; node = next) {
        next = node->next;
        struct guarded_conn *g = H2O_STRUCT_FROM_MEMBER(struct guarded_conn, http1_link, node);
        /* Waiting for a request that has not begun: h2o's read callback takes an error as the
         * client going away and closes the connection, as it would have at its idle timeout. */
        if (!g->closed && g->sock->_cb.read == guard_read && g->sock->input->size == 0 &&
            (g->http1 == HTTP1_HEAD || g->http1 == HTTP1_CLOSING))
            g->inner_read(g->sock, h2o_socket_error_closed);
    }
}

void epcs_guard_turn(struct epcs_guard *guard)
{
    guard->turn++;
    h2o_linklist_t *anchor = &guard->http1;
    for (h2o_linklist_t *node = anchor->next; node != anchor; node = node->next)
        take_read(H2O_STRUCT_FROM_MEMBER(struct guarded_conn, http1_link, node));
}

void epcs_guard_read_counts(const struct epcs_guard *guard, struct epcs_guard_counts *counts)
{
    counts->open = atomic_load_explicit(&guard->stats.open, memory_order_relaxed);
    counts->refused = atomic_load_explicit(&guard->stats.refused, memory_order_relaxed);
    counts->bodies_dropped =
        atomic_load_explicit(&guard->stats.bodies_dropped, memory_order_relaxed);
    counts->goaways = atomic_load_explicit(&guard->stats.goaways, memory_order_relaxed);
    counts->deferred = atomic_load_explicit(&guard->stats.deferred, memory_order_relaxed);
}
