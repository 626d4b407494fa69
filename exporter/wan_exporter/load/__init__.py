"""Loading a Wan pipeline offline from any checkpoint form, in a child process."""
