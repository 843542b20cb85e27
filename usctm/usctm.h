/* SPDX-License-Identifier: GPL-2.0 */
/*
 * usctm - x86-64 system call slot installer, kernel API.
 *
 * A client module asks usctm for a free x86-64 system call number and a
 * handler; from then on a user-space syscall(nr, ...) with that number runs
 * the handler in the calling task's syscall context and returns what the
 * handler returns, exactly like a native system call.
 *
 * Clients should bind with symbol_get() so that they load without usctm:
 *
 *	int (*install)(usctm_handler_t) = symbol_get(usctm_install);
 *
 * and keep the reference to usctm_uninstall until their exit path.  While a
 * symbol reference is held, usctm cannot be unloaded; usctm additionally
 * holds one reference on itself per installed slot.
 */
#ifndef _USCTM_H
#define _USCTM_H

struct pt_regs;

/**
 * typedef usctm_handler_t - a system call handler
 * @regs: the calling task's user register frame.  The arguments are
 *	  @regs->di, @regs->si, @regs->dx, @regs->r10, @regs->r8, @regs->r9
 *	  (x86-64 syscall ABI), the number is @regs->orig_ax.  Treat @regs as
 *	  read-only.
 *
 * Runs in process context of the calling task; may sleep.  It must not call
 * usctm_install() or usctm_uninstall(), and it must not block indefinitely:
 * usctm_uninstall() waits for every running handler call to return.
 *
 * Return: the system call's result; -errno values (-4095..-1) reach user
 * space as errors, exactly like the return value of a native system call.
 */
typedef long (*usctm_handler_t)(const struct pt_regs *regs);

/**
 * usctm_install() - attach a handler to a free system call number
 * @handler: the handler; must stay callable until usctm_uninstall() returns.
 *
 * Context: process context, may sleep.
 * Return: the system call number (>= 0), or -EINVAL (no handler), -ENOSPC
 * (no free slot left), -ENODEV (usctm is being unloaded).
 */
int usctm_install(usctm_handler_t handler);

/**
 * usctm_uninstall() - detach the handler of a system call number
 * @nr: a number returned by usctm_install().
 *
 * After it returns, the number answers -ENOSYS again and the handler is
 * neither running nor will it ever be called again for @nr, so the client
 * module may be unloaded.
 *
 * Context: process context, sleeps (waits for running handler calls).  Must
 * not be called from a handler.
 * Return: 0, or -ENOENT if @nr is not installed.
 */
int usctm_uninstall(int nr);

#endif /* _USCTM_H */
