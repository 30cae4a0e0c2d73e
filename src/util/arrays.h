/*
 * arrays.h
 *		One-dimensional arrays of built-in types, built for SPI parameters.
 */
#ifndef EVC_UTIL_ARRAYS_H
#define EVC_UTIL_ARRAYS_H

#include "nodes/pg_list.h"
#include "utils/array.h"

extern ArrayType *evc_array_from_datums(Oid elemtype, Datum *elems, bool *nulls, int n);
extern ArrayType *evc_text_array_from_list(List *strings);

#endif							/* EVC_UTIL_ARRAYS_H */
