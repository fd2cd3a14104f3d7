from django.urls import path

from accounts import views
from config.views import portal_pending

app_name = "accounts"
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("login/", views.login_view, name="login"),
    path("logout/", views.logout_view, name="logout"),
    path("organizations/switch/", views.organization_switch, name="organization-switch"),
    path("team/", portal_pending, name="team"),
    path("invitations/<str:token>/", views.invitation_accept, name="invitation-accept"),
]
