/* SPDX-License-Identifier: GPL-2.0 */
#ifndef BDSNAP_CLI_PASSWORD_H
#define BDSNAP_CLI_PASSWORD_H

#include <stddef.h>

/*
 * read_password() - the module password, never from argv: from @passfile
 * (refused unless mode & 077 == 0 and owned by root or the caller), else from file descriptor @fd (>= 0),
 * else typed at /dev/tty without echo.  One line; its newline is dropped.
 * Return: 0, or -1 after printing why.  The caller wipes @buf.
 */
int read_password(const char *passfile, int fd, char *buf, size_t cap);

#endif
