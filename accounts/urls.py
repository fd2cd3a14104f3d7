from django.urls import path

from accounts import views

app_name = "accounts"
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("login/", views.login_view, name="login"),
    path("logout/", views.logout_view, name="logout"),
    path("organizations/switch/", views.organization_switch, name="organization-switch"),
    path("invitations/<str:token>/", views.invitation_accept, name="invitation-accept"),
]
