/*
 * launcher.h
 *		The static launcher background worker.
 */
#ifndef EVC_LAUNCHER_H
#define EVC_LAUNCHER_H

extern void evc_launcher_register(void);
extern PGDLLEXPORT void evc_launcher_main(Datum main_arg);

#endif
