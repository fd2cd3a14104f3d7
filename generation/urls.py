"""Portal pages of jobs (the API's routes are in generation/api/urls.py)."""
from django.urls import path

from generation.portal import jobs as job_views
from generation.portal import new_job as views_new

app_name = "jobs"
urlpatterns = [
    # The jobs list, the new job form and its estimate (generation/portal/new_job.py).
    path("jobs/", views_new.job_list, name="job-list"),
    path("jobs/new/", views_new.job_new, name="job-new"),
    path("jobs/new/estimate", views_new.job_estimate, name="job-estimate"),
    path("jobs/voices/<str:voice>.wav", views_new.voice_preview, name="voice-preview"),
    # The job page, its live fragments, actions and files (generation/portal/jobs.py).
    path("jobs/<uuid:job_id>/", job_views.JobDetailPage.as_view(), name="job-detail"),
    path("jobs/<uuid:job_id>/panel", job_views.JobPanelPage.as_view(), name="job-panel"),
    path("jobs/<uuid:job_id>/cancel", job_views.JobCancelPage.as_view(), name="job-cancel"),
    path("jobs/<uuid:job_id>/retry", job_views.JobRetryPage.as_view(), name="job-retry"),
    path("jobs/<uuid:job_id>/approve", job_views.JobApprovePage.as_view(), name="job-approve"),
    path("jobs/<uuid:job_id>/video", job_views.JobVideoPage.as_view(), name="job-video"),
    path("jobs/<uuid:job_id>/thumbnail", job_views.JobThumbnailPage.as_view(), name="job-thumbnail"),
    path("jobs/<uuid:job_id>/subtitles.srt", job_views.JobSubtitlesSrtPage.as_view(), name="job-subtitles-srt"),
    path("jobs/<uuid:job_id>/subtitles.vtt", job_views.JobSubtitlesVttPage.as_view(), name="job-subtitles-vtt"),
    path("jobs/<uuid:job_id>/shots/<int:number>/", job_views.ShotCardPage.as_view(), name="job-shot"),
    path("jobs/<uuid:job_id>/shots/<int:number>/edit", job_views.ShotEditPage.as_view(), name="job-shot-edit"),
    path("jobs/<uuid:job_id>/shots/<int:number>/regenerate", job_views.ShotRegeneratePage.as_view(),
         name="job-shot-regenerate"),
    path("jobs/<uuid:job_id>/shots/<int:number>/frame", job_views.ShotFramePage.as_view(), name="job-frame"),
]
