@admin.get("/")
@requires("viewer")
def dashboard() -> ResponseReturnValue:
    app = current().app
    words = app.messages["admin"]["dashboard"]
    return render_admin("dashboard.html.j2", view=dashboard_view(app, app.clock(), words), w=words)
