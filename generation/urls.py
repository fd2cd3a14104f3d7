from django.urls import path

from generation import api

urlpatterns = [
    path("jobs", api.JobListView.as_view(), name="job-list"),
    path("jobs/<uuid:job_id>", api.JobDetailView.as_view(), name="job-detail"),
    path("jobs/<uuid:job_id>/cancel", api.JobCancelView.as_view(), name="job-cancel"),
    path("jobs/<uuid:job_id>/retry", api.JobRetryView.as_view(), name="job-retry"),
    path("jobs/<uuid:job_id>/approve", api.JobApproveView.as_view(), name="job-approve"),
    path("jobs/<uuid:job_id>/shots/<int:number>", api.ShotView.as_view(), name="job-shot"),
    path("jobs/<uuid:job_id>/shots/<int:number>/regenerate", api.ShotRegenerateView.as_view(),
         name="job-shot-regenerate"),
    path("jobs/<uuid:job_id>/shots/<int:number>/frame", api.JobFrameView.as_view(), name="job-frame"),
    path("jobs/<uuid:job_id>/video", api.JobVideoView.as_view(), name="job-video"),
    path("jobs/<uuid:job_id>/thumbnail", api.JobThumbnailView.as_view(), name="job-thumbnail"),
    path("jobs/<uuid:job_id>/events", api.JobEventsView.as_view(), name="job-events"),
]
