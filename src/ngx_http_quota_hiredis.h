/*
 * hiredis on nginx's event loop (see ngx_http_quota_hiredis.c).
 */

#ifndef _NGX_HTTP_QUOTA_HIREDIS_H_INCLUDED_
#define _NGX_HTTP_QUOTA_HIREDIS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>


/*
 * hiredis is freeing the context: it closes the socket right after; data
 * is what was given to attach, the context's owner
 */
typedef void (*ngx_http_quota_hiredis_gone_pt)(void *data);


/*
 * puts ac on the event loop; its state (nginx connection, reply arena)
 * lives with the context, in ac->ev.data, and goes with it
 */
ngx_int_t ngx_http_quota_hiredis_attach(redisAsyncContext *ac, ngx_log_t *log,
    ngx_http_quota_hiredis_gone_pt gone, void *data);


#endif /* _NGX_HTTP_QUOTA_HIREDIS_H_INCLUDED_ */
