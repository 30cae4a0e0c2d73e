/*
 * fmgr_args.h
 *		Arguments of evcollector's SQL functions: required ones, which fail
 *		with a named error when NULL, and optional ones, which are C NULL.
 */
#ifndef EVC_UTIL_FMGR_ARGS_H
#define EVC_UTIL_FMGR_ARGS_H

#include "fmgr.h"
#include "utils/jsonb.h"

extern Datum evc_arg_required(FunctionCallInfo fcinfo, int n, const char *name);
extern char *evc_arg_text(FunctionCallInfo fcinfo, int n, const char *name);
extern char *evc_arg_text_or_null(FunctionCallInfo fcinfo, int n);
extern Jsonb *evc_arg_jsonb(FunctionCallInfo fcinfo, int n, const char *name);
extern Jsonb *evc_arg_jsonb_or_null(FunctionCallInfo fcinfo, int n);

#endif							/* EVC_UTIL_FMGR_ARGS_H */
