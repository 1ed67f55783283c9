"""Errors the CLI turns into one line on stderr and an exit code, instead of a traceback."""


class UserError(Exception):
    """Bad input (a flag, an answer, a folder): exit code 2, nothing written."""

    exit_code = 2


class UpdateConflict(Exception):
    """`update` merged the new template but left conflicts for the user to resolve: exit code 1."""

    exit_code = 1

    def __init__(self, files: list[str], dry_run: bool = False) -> None:
        self.files = files
        if dry_run:
            message = "the update would conflict with your edits in: " + ", ".join(files) + " (nothing was changed)"
        else:
            message = ("the update conflicts with your edits in: " + ", ".join(files)
                       + " (resolve the markers or .rej files, then commit; nothing was committed)")
        super().__init__(message)
