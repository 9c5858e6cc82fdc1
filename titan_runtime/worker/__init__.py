"""The worker: one outbound stream to the master, and the processes of the attempts it runs."""
