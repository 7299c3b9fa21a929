"""Launch univla_nav: `ros2 launch univla_ros nav.launch.py checkpoint:=/models/univla-r2r`."""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

ARGS = {
    'params_file': (PathJoinSubstitution([FindPackageShare('univla_ros'), 'config', 'r2r_base.yaml']),
                    'ROS parameters file'),
    'namespace': ('', 'node namespace'),
    'node_name': ('univla_nav', 'node name'),
    'checkpoint': ('', 'checkpoint directory (overrides the params file when set)'),
    'image_topic': ('/camera/color/image_raw', 'camera topic (remapped onto image_raw)'),
    'cmd_vel_topic': ('/cmd_vel', 'velocity output topic'),
    'use_sim_time': ('false', 'follow /clock'),
    'dry_run': ('false', 'publish everything except velocity commands'),
}


def node(context):
    get = lambda name: LaunchConfiguration(name).perform(context)
    overrides = {'use_sim_time': get('use_sim_time') == 'true', 'dry_run': get('dry_run') == 'true'}
    if get('checkpoint'):
        overrides['checkpoint'] = get('checkpoint')
    return [Node(
        package='univla_ros',
        executable='univla_nav',
        name=get('node_name'),
        namespace=get('namespace'),
        output='screen',
        emulate_tty=True,
        parameters=[get('params_file'), overrides],
        remappings=[('image_raw', get('image_topic')), ('cmd_vel', get('cmd_vel_topic'))],
    )]


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(k, default_value=v, description=d) for k, (v, d) in ARGS.items()]
        + [OpaqueFunction(function=node)])
