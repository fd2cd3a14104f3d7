from django.urls import path

from accounts import views

app_name = "accounts"
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("dashboard/jobs/", views.dashboard_jobs, name="dashboard-jobs"),
    path("login/", views.login_view, name="login"),
    path("logout/", views.logout_view, name="logout"),
    path("password-reset/", views.PasswordResetView.as_view(), name="password-reset"),
    path("password-reset/sent/", views.PasswordResetDoneView.as_view(), name="password-reset-done"),
    path("password-reset/confirm/", views.PasswordResetConfirmView.as_view(), name="password-reset-confirm"),
    path("password-reset/done/", views.PasswordResetCompleteView.as_view(), name="password-reset-complete"),
    path("organizations/switch/", views.organization_switch, name="organization-switch"),
    path("team/", views.team, name="team"),
    path("team/invitations/", views.InvitationCreateView.as_view(), name="team-invitation-create"),
    path("team/invitations/<uuid:invitation_id>/revoke/", views.InvitationRevokeView.as_view(),
         name="team-invitation-revoke"),
    path("team/members/<uuid:member_id>/role/", views.MemberRoleView.as_view(), name="team-member-role"),
    path("team/members/<uuid:member_id>/remove/", views.MemberRemoveView.as_view(), name="team-member-remove"),
    path("team/api-keys/", views.ApiKeyListView.as_view(), name="team-api-keys"),
    path("team/api-keys/<uuid:api_key_id>/revoke/", views.ApiKeyRevokeView.as_view(), name="team-api-key-revoke"),
    path("team/webhooks/", views.WebhookListView.as_view(), name="team-webhooks"),
    path("team/webhooks/<uuid:webhook_id>/", views.WebhookDetailView.as_view(), name="team-webhook"),
    path("team/webhooks/<uuid:webhook_id>/edit/", views.WebhookEditView.as_view(), name="team-webhook-edit"),
    path("team/webhooks/<uuid:webhook_id>/delete/", views.WebhookDeleteView.as_view(), name="team-webhook-delete"),
    path("team/audit/", views.audit_log, name="team-audit"),
    path("invitations/<str:token>/", views.invitation_accept, name="invitation-accept"),
]
