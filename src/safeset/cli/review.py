"""`safeset review --cases URL [--port N]`: triage cases in a browser, on 127.0.0.1 only."""

from __future__ import annotations

from typing import Annotated

import typer

from safeset.cli.common import console, friendly, out


def register(app: typer.Typer) -> None:
    @app.command("review")
    @friendly
    def review(
        cases: Annotated[
            str, typer.Option("--cases", help="Case store URL: sqlite:///path/cases.db or postgresql://…")
        ],
        port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port on 127.0.0.1 (0: any free).")] = 0,
        who: Annotated[str, typer.Option("--who", help="Name recorded in the audit log (default: login name).")] = "",
        service: Annotated[
            str | None, typer.Option("--service", help="Verification service for 'submit': arachnid, hma, photodna.")
        ] = None,
        endpoint: Annotated[str | None, typer.Option("--endpoint", help="The service's base URL.")] = None,
        page_size: Annotated[int, typer.Option("--page-size", min=1, max=5000, help="Cases per page.")] = 100,
    ) -> None:
        """Serve the review page: cases with filters, evidence as text (URLs never as links or images), bulk
        dismiss/submit, and each case's audit trail. Every request needs the token in the printed URL."""
        from safeset.cases import CaseStore
        from safeset.review import ReviewOptions, start_review
        from safeset.services import service as make_service

        adapter = make_service(service, endpoint) if service else None
        options = ReviewOptions(port=port, page_size=page_size, who=who, service=service, endpoint=endpoint)
        store = CaseStore.open(cases, create=False)
        running = start_review(store, options, adapter)
        out.print(f"review page: {running.url}", highlight=False, soft_wrap=True)
        console.print("Open it in a browser on this machine; Ctrl-C stops the server.", highlight=False)
        try:
            while running.thread.is_alive():
                running.thread.join(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            running.stop()
            store.close()
