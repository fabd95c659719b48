/* Request bodies: their size, media type and decoding, each refusal answered with its error. */
#include "http.h"

int epcs_body_media(h2o_req_t *req, size_t limit)
{
    if (req->entity.base == NULL || req->entity.len == 0)
        return epcs_respond_error(req, 400, "bad_request", NULL, "the request body is empty"), -1;
    if (req->entity.len > limit)
        return epcs_respond_error(req, 413, "too_large", NULL,
                                  "the body has %zu bytes; the limit is %zu", req->entity.len,
                                  limit),
               -1;
    int media = epcs_request_media(req);
    if (media < 0) {
        ssize_t at = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
        h2o_iovec_t type = at >= 0 ? req->headers.entries[at].value : h2o_iovec_init("", 0);
        return epcs_respond_error(req, 415, "unsupported_media_type", NULL,
                                  "Content-Type must be application/msgpack or application/json"
                                  ", got '%.*s'",
                                  epcs_quote_len(type.len), type.base),
               -1;
    }
    return media;
}

int epcs_read_body(h2o_req_t *req, size_t limit, msgpack_object *body, int *is_msgpack)
{
    struct epcs_worker *worker = epcs_worker_of(req);
    int media = epcs_body_media(req, limit);
    if (media < 0)
        return -1;
    if (is_msgpack != NULL)
        *is_msgpack = media == 1;
    struct epcs_decode_error decode_error;
    int decoded = media == 1 ? epcs_msgpack_decode(req->entity.base, req->entity.len, &worker->zone,
                                                   body, &decode_error)
                             : epcs_json_decode(req->entity.base, req->entity.len, &worker->zone,
                                                body, &decode_error);
    if (decoded != 0)
        return epcs_respond_error(req, 400, "bad_request", decode_error.field, "%s",
                                  decode_error.message),
               -1;
    return 0;
}
