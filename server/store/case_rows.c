/* The case store's rows in msgpack and CSV, read through a backend's cursor (case_rows.h). */
#include "case_rows.h"

#include <stdio.h>
#include <string.h>

#include "case_rules.h"
#include "codec.h"
#include "dates.h"

/* Columns of EPCS_CASE_REQUEST_SELECT. */
enum {
    RQ_ID,
    RQ_REPORT,
    RQ_KIND,
    RQ_PARTNER,
    RQ_ARTICLE,
    RQ_ATTEMPT,
    RQ_STATUS,
    RQ_CREATED,
    RQ_DUE,
    RQ_OBJECTION_UNTIL,
    RQ_FOLLOWS,
    RQ_ACTION,
    RQ_ANSWERED,
    RQ_REASON,
    RQ_DATA,
    RQ_VIA,
    RQ_URL,
    RQ_PLATFORM,
    RQ_ELECTION,
    RQ_CATEGORY,
    RQ_SENT,
};

/* Columns of EPCS_CASE_REPORT_SELECT. */
enum {
    RP_ID,
    RP_FILED,
    RP_FILED_BY,
    RP_STATUS,
    /* url, platform, election, category, date, verdict, article, ruleset: texts in a row */
    RP_URL,
    RP_DECISION = 12,
    RP_UPDATED,
    RP_REQUEST_COUNT,
    RP_FACTS,
    RP_ANSWER,
    RP_POSTING,
    RP_REPORTER_COUNT,
};

static int is_null(const struct epcs_case_row *row, int column)
{
    return row->ops->is_null(row, column);
}

static void pack_text(msgpack_packer *pk, const struct epcs_case_row *row, int column)
{
    size_t len;
    const char *text = row->ops->bytes(row, column, &len);
    if (is_null(row, column))
        msgpack_pack_nil(pk);
    else
        epcs_pack_str(pk, text, len);
}

static void pack_time(msgpack_packer *pk, const struct epcs_case_row *row, int column)
{
    if (is_null(row, column))
        msgpack_pack_nil(pk);
    else
        epcs_pack_instant_us(pk, row->ops->integer(row, column));
}

static void pack_id(msgpack_packer *pk, const struct epcs_case_row *row, int column)
{
    if (is_null(row, column))
        msgpack_pack_nil(pk);
    else
        msgpack_pack_uint64(pk, (uint64_t)row->ops->integer(row, column));
}

/* A stored msgpack value, or nil when the column is NULL or empty. */
static void pack_blob(msgpack_packer *pk, const struct epcs_case_row *row, int column)
{
    size_t len;
    const char *bytes = row->ops->bytes(row, column, &len);
    if (is_null(row, column) || len == 0)
        msgpack_pack_nil(pk);
    else
        epcs_case_pack_raw(pk, bytes, len);
}

static void pack_key(msgpack_packer *pk, const char *key)
{
    epcs_pack_cstr(pk, key);
}

static void pack_integer(msgpack_packer *pk, const struct epcs_case_row *row, int column)
{
    msgpack_pack_int64(pk, row->ops->integer(row, column));
}

static void pack_bool(msgpack_packer *pk, int value)
{
    if (value)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}

/* One entry of a packed row: its key, and how its column is packed. */
struct field {
    const char *key;
    void (*pack)(msgpack_packer *pk, const struct epcs_case_row *row, int column);
    int column;
};

/* `count` fields as entries of a map of `count` + `more`; the caller adds those. */
static void pack_fields(msgpack_packer *pk, const struct epcs_case_row *row,
                        const struct field *fields, size_t count, size_t more)
{
    msgpack_pack_map(pk, count + more);
    for (size_t i = 0; i < count; i++) {
        pack_key(pk, fields[i].key);
        fields[i].pack(pk, row, fields[i].column);
    }
}

#define FIELD_COUNT(fields) (sizeof(fields) / sizeof(fields[0]))

/* The answer of a request that has one, as a map of its own. */
static void pack_answer(msgpack_packer *pk, const struct epcs_case_row *row)
{
    int has_reason = !is_null(row, RQ_REASON);
    int has_data = !is_null(row, RQ_DATA);
    int has_via = !is_null(row, RQ_VIA);
    msgpack_pack_map(pk, 2 + (size_t)has_reason + (size_t)has_data + (size_t)has_via);
    pack_key(pk, "status");
    pack_text(pk, row, RQ_STATUS);
    pack_key(pk, "at");
    pack_time(pk, row, RQ_ANSWERED);
    if (has_reason) {
        pack_key(pk, "reason");
        pack_text(pk, row, RQ_REASON);
    }
    if (has_data) {
        pack_key(pk, "data");
        pack_blob(pk, row, RQ_DATA);
    }
    if (has_via) {
        pack_key(pk, "via");
        pack_id(pk, row, RQ_VIA);
    }
}

static const struct field request_fields[] = {
    {"id", pack_id, RQ_ID},
    {"report", pack_id, RQ_REPORT},
    {"kind", pack_text, RQ_KIND},
    {"to", pack_text, RQ_PARTNER},
    {"article", pack_text, RQ_ARTICLE},
    {"attempt", pack_integer, RQ_ATTEMPT},
    {"status", pack_text, RQ_STATUS},
    {"created", pack_time, RQ_CREATED},
    {"sent", pack_time, RQ_SENT},
    {"due", pack_time, RQ_DUE},
    {"objection_until", pack_time, RQ_OBJECTION_UNTIL},
    {"follows", pack_id, RQ_FOLLOWS},
    {"url", pack_text, RQ_URL},
    {"platform", pack_text, RQ_PLATFORM},
    {"election", pack_text, RQ_ELECTION},
    {"category", pack_text, RQ_CATEGORY},
    {"action", pack_blob, RQ_ACTION},
};

void epcs_case_pack_request(msgpack_packer *pk, const struct epcs_case_row *row)
{
    pack_fields(pk, row, request_fields, FIELD_COUNT(request_fields), 1);
    pack_key(pk, "answer");
    if (is_null(row, RQ_ANSWERED))
        msgpack_pack_nil(pk);
    else
        pack_answer(pk, row);
}

static const struct field summary_fields[] = {
    {"id", pack_id, RP_ID},
    {"status", pack_text, RP_STATUS},
    {"filed_at", pack_time, RP_FILED},
    {"filed_by", pack_text, RP_FILED_BY},
    {"url", pack_text, RP_URL},
    {"platform", pack_text, RP_URL + 1},
    {"election", pack_text, RP_URL + 2},
    {"category", pack_text, RP_URL + 3},
    {"date", pack_text, RP_URL + 4},
    {"verdict", pack_text, RP_URL + 5},
    {"article", pack_text, RP_URL + 6},
    {"ruleset", pack_text, RP_URL + 7},
    {"decision", pack_id, RP_DECISION},
    {"updated_at", pack_time, RP_UPDATED},
    {"request_count", pack_integer, RP_REQUEST_COUNT},
    {"posting", pack_text, RP_POSTING},
    {"reporter_count", pack_integer, RP_REPORTER_COUNT},
};

void epcs_case_pack_summary(msgpack_packer *pk, const struct epcs_case_row *row)
{
    pack_fields(pk, row, summary_fields, FIELD_COUNT(summary_fields), 0);
}

static const struct field history_fields[] = {
    {"at", pack_time, 0},     {"event", pack_text, 1}, {"request", pack_id, 2},
    {"status", pack_text, 3}, {"by", pack_text, 4},    {"detail", pack_blob, 5},
    {"decision", pack_id, 6},
};

void epcs_case_pack_history(msgpack_packer *pk, const struct epcs_case_row *row)
{
    pack_fields(pk, row, history_fields, FIELD_COUNT(history_fields), 0);
}

static const struct field reporter_fields[] = {
    {"partner", pack_text, 0},
    {"at", pack_time, 1},
    {"url", pack_text, 2},
};

void epcs_case_pack_reporter(msgpack_packer *pk, const struct epcs_case_row *row)
{
    pack_fields(pk, row, reporter_fields, FIELD_COUNT(reporter_fields), 0);
}

/* A policy staff never set is "hold", by default. */
void epcs_case_pack_policy(msgpack_packer *pk, const char *partner, const struct epcs_case_row *row)
{
    msgpack_pack_map(pk, 5);
    pack_key(pk, "partner");
    epcs_pack_cstr(pk, partner);
    pack_key(pk, "reports");
    if (row != NULL)
        pack_text(pk, row, 0);
    else
        epcs_pack_cstr(pk, "hold");
    pack_key(pk, "default");
    pack_bool(pk, row == NULL);
    pack_key(pk, "set_at");
    if (row != NULL)
        pack_time(pk, row, 1);
    else
        msgpack_pack_nil(pk);
    pack_key(pk, "set_by");
    if (row != NULL)
        pack_text(pk, row, 2);
    else
        msgpack_pack_nil(pk);
}

/* ---- CSV ---------------------------------------------------------------------------------- */

/* Whether a spreadsheet would read a cell starting so as a formula (OWASP, CSV injection): the
   cell then gets a leading apostrophe, which shows it as the text it is. */
static int csv_formula_start(const char *text, size_t len)
{
    return len > 0 && text[0] != '\0' && strchr("=+-@\t\r", text[0]) != NULL;
}

static int csv_needs_quotes(const char *text, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ',' || text[i] == '"' || text[i] == '\r' || text[i] == '\n')
            return 1;
    }
    return 0;
}

static void csv_field(struct epcs_buf *out, const char *text, size_t len, int last)
{
    int formula = csv_formula_start(text, len);
    if (csv_needs_quotes(text, len)) {
        epcs_buf_append(out, formula ? "\"'" : "\"", formula ? 2 : 1);
        for (size_t i = 0; i < len; i++) {
            if (text[i] == '"')
                epcs_buf_append(out, "\"", 1);
            epcs_buf_append(out, text + i, 1);
        }
        epcs_buf_append(out, "\"", 1);
    } else {
        if (formula)
            epcs_buf_append(out, "'", 1);
        epcs_buf_append(out, text, len);
    }
    epcs_buf_append(out, last ? "\r\n" : ",", last ? 2 : 1);
}

static void csv_text(struct epcs_buf *out, const struct epcs_case_row *row, int column, int last)
{
    size_t len;
    const char *text = row->ops->bytes(row, column, &len);
    csv_field(out, text != NULL ? text : "", text != NULL ? len : 0, last);
}

/* A number column in decimal, or an empty field for NULL. */
static void csv_number(struct epcs_buf *out, const struct epcs_case_row *row, int column, int last)
{
    char text[24] = "";
    if (!is_null(row, column))
        snprintf(text, sizeof(text), "%lld", (long long)row->ops->integer(row, column));
    csv_field(out, text, strlen(text), last);
}

/* A time column as the JSON listings give it, or an empty field for NULL. */
static void csv_time(struct epcs_buf *out, const struct epcs_case_row *row, int column, int last)
{
    char text[EPCS_INSTANT_US_LEN] = "";
    if (!is_null(row, column))
        epcs_instant_format_us(row->ops->integer(row, column), text);
    csv_field(out, text, strlen(text), last);
}

void epcs_case_write_report(struct epcs_buf *out, const struct epcs_case_row *row)
{
    csv_number(out, row, RP_ID, 0);
    csv_time(out, row, RP_FILED, 0);
    for (int column = RP_FILED_BY; column < RP_DECISION; column++)
        csv_text(out, row, column, 0);
    csv_number(out, row, RP_DECISION, 0);
    csv_number(out, row, RP_REQUEST_COUNT, 0);
    csv_time(out, row, RP_UPDATED, 1);
}

/* In the order of the JSON request, without `action` and the answer's `data` (maps, which a
   spreadsheet cannot hold). */
void epcs_case_write_request(struct epcs_buf *out, const struct epcs_case_row *row)
{
    csv_number(out, row, RQ_ID, 0);
    csv_number(out, row, RQ_REPORT, 0);
    for (int column = RQ_KIND; column <= RQ_ARTICLE; column++)
        csv_text(out, row, column, 0);
    csv_number(out, row, RQ_ATTEMPT, 0);
    csv_text(out, row, RQ_STATUS, 0);
    for (int column = RQ_CREATED; column <= RQ_OBJECTION_UNTIL; column++)
        csv_time(out, row, column, 0);
    csv_number(out, row, RQ_FOLLOWS, 0);
    for (int column = RQ_URL; column <= RQ_CATEGORY; column++)
        csv_text(out, row, column, 0);
    csv_time(out, row, RQ_ANSWERED, 0);
    csv_text(out, row, RQ_REASON, 0);
    csv_number(out, row, RQ_VIA, 1);
}

/* ---- walking the rows --------------------------------------------------------------------- */

/* The rows of a page, packed one after another. */
struct packed_rows {
    struct epcs_buf bytes;
    size_t count;
    /* Column 0 of the last row packed. */
    uint64_t last;
    /* A row beyond `limit` followed. */
    int more;
};

/* Packs up to `limit` rows into `packed` (freed by the caller). 0, or -1 with `err`. */
static int pack_rows(struct epcs_case_row *rows, size_t limit, epcs_case_pack_fn pack_row,
                     struct packed_rows *packed, char *err, size_t err_size)
{
    msgpack_packer rows_pk;
    msgpack_packer_init(&rows_pk, &packed->bytes, epcs_buf_msgpack_write);
    int moved;
    while ((moved = rows->ops->next(rows, err, err_size)) == 1) {
        if (packed->count == limit) {
            packed->more = 1;
            break;
        }
        pack_row(&rows_pk, rows);
        packed->last = (uint64_t)rows->ops->integer(rows, 0);
        packed->count++;
    }
    return moved < 0 ? -1 : 0;
}

int epcs_case_pack_array(struct epcs_case_row *rows, epcs_case_pack_fn pack_row, msgpack_packer *pk,
                         char *err, size_t err_size)
{
    struct packed_rows packed = {.count = 0};
    int rc = pack_rows(rows, SIZE_MAX, pack_row, &packed, err, err_size);
    if (rc == 0) {
        msgpack_pack_array(pk, packed.count);
        epcs_case_pack_raw(pk, packed.bytes.data, packed.bytes.len);
    }
    epcs_buf_free(&packed.bytes);
    return rc;
}

int epcs_case_pack_page(struct epcs_case_row *rows, const char *name, size_t limit,
                        epcs_case_pack_fn pack_row, msgpack_packer *pk, char *err, size_t err_size)
{
    struct packed_rows packed = {.count = 0};
    int rc = pack_rows(rows, limit, pack_row, &packed, err, err_size);
    if (rc == 0) {
        msgpack_pack_map(pk, 2);
        pack_key(pk, name);
        msgpack_pack_array(pk, packed.count);
        epcs_case_pack_raw(pk, packed.bytes.data, packed.bytes.len);
        pack_key(pk, "next");
        if (packed.more)
            msgpack_pack_uint64(pk, packed.last);
        else
            msgpack_pack_nil(pk);
    }
    epcs_buf_free(&packed.bytes);
    return rc;
}

int epcs_case_export(struct epcs_case_row *rows, size_t limit, const char *header,
                     epcs_case_write_fn write_row, struct epcs_buf *out, uint64_t *next, char *err,
                     size_t err_size)
{
    epcs_buf_append_str(out, header);
    size_t count = 0;
    uint64_t last = 0;
    int moved;
    *next = 0;
    while ((moved = rows->ops->next(rows, err, err_size)) == 1) {
        if (count == limit) {
            *next = last;
            break;
        }
        write_row(out, rows);
        last = (uint64_t)rows->ops->integer(rows, 0);
        count++;
    }
    return moved < 0 ? -1 : 0;
}

int epcs_case_pack_report(const struct epcs_case_row *row, const char *partner, int joined,
                          const struct epcs_case_report_parts *parts, void *ctx, msgpack_packer *pk,
                          char *err, size_t err_size)
{
    uint64_t id = (uint64_t)row->ops->integer(row, RP_ID);
    struct epcs_buf out = {0};
    msgpack_packer out_pk;
    msgpack_packer_init(&out_pk, &out, epcs_buf_msgpack_write);
    pack_fields(&out_pk, row, summary_fields, FIELD_COUNT(summary_fields), 5 + (joined >= 0));
    if (joined >= 0) {
        pack_key(&out_pk, "joined");
        pack_bool(&out_pk, joined);
    }
    pack_key(&out_pk, "facts");
    pack_blob(&out_pk, row, RP_FACTS);
    pack_key(&out_pk, "answer");
    pack_blob(&out_pk, row, RP_ANSWER);
    pack_key(&out_pk, "reporters");
    int rc = parts->reporters(ctx, id, partner, &out_pk, err, err_size);
    if (rc == 0) {
        pack_key(&out_pk, "requests");
        rc = parts->requests(ctx, id, partner, &out_pk, err, err_size);
    }
    if (rc == 0) {
        pack_key(&out_pk, "history");
        rc = parts->history(ctx, id, partner, &out_pk, err, err_size);
    }
    if (rc == 0)
        epcs_case_pack_raw(pk, out.data, out.len);
    epcs_buf_free(&out);
    return rc;
}
