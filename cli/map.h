/* SPDX-License-Identifier: GPL-2.0 */
/* bdsnap map: a session's view served as a read-only NBD device (map.c). */
#ifndef BDSNAP_CLI_MAP_H
#define BDSNAP_CLI_MAP_H

#include <stdio.h>

#include "bdsnap.h"

/*
 * map_attach() - serve @v on a free NBD device from a daemon, recorded as
 * the view of @session read from @source; its path in @dev.  The caller
 * closes its own @v afterwards: the daemon has its copy.  The blocks the
 * daemon cannot read go to the system log and to bdsnap maps.
 * Return: 0; -ENODEV no nbd driver, -EBUSY every device in use (*@refused
 * says why); -ETIMEDOUT the device did not connect; -errno.
 */
int map_attach(struct bdsnap_view *v, const struct bdsnap_session_info *session,
	       const char *source, char *dev, size_t devlen, const char **refused);

/*
 * map_mount() - mount the view @dev on @dir read-only, without journal
 * replay or log recovery (ext2/3/4, XFS).  0; -EMEDIUMTYPE another file
 * system (*@refused says so); -errno of mount(2).
 */
int map_mount(const char *dev, const char *dir, const char **refused);

/*
 * map_detach() - detach the view @dev (/dev/nbdN) and wait for its server.
 * EXIT_SUCCESS, or an exit code after a message (EXIT_REFUSED: mounted).
 */
int map_detach(const char *dev);

int cmd_unmap(const struct args *a, const char *name);
int cmd_umount(const struct args *a, const char *name);
int cmd_maps(const struct args *a, const char *name);
void maps_help(FILE *f);

#endif
